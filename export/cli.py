"""`tfstack models list|show|check` and `tfstack export`: inspect a repository, check a version the way
TF Serving loads it, publish a model the user brings."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tfstack.export._errors import CorruptVersionError, ExportError
from tfstack.export._manifest import key_metric
from tfstack.export._repository import version_directories
from tfstack.export._repository import ModelRepository

_BASE_PATH = click.option(
    "--base-path",
    default="./models",
    show_default=True,
    type=click.Path(file_okay=True, dir_okay=True),
    help="Repository root: <base-path>/<model>/<version>/.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def models() -> None:
    """List and inspect versions in a model repository."""


@models.command("list")
@_BASE_PATH
def list_models(base_path: str) -> None:
    """List models and versions: created, key metric, status."""
    from rich.console import Console
    from rich.table import Table

    repo = ModelRepository(base_path)
    rows: list[tuple[str, ...]] = []
    with _errors():
        for model_name in repo.models():
            versions = repo.versions(model_name)
            if not versions:
                rows.append((model_name, "-", "-", "-", "no versions"))
            for version in versions:
                rows.append((model_name, *_version_row(repo, model_name, version, latest=version == versions[-1])))
    console = Console()
    if not rows:
        console.print(f"No models in {base_path}")
        return
    table = Table(title=f"Models in {base_path}")
    for column in ("model", "version", "created", "metric"):
        table.add_column(column, no_wrap=True)
    table.add_column("status", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@models.command("show")
@click.argument("model_name")
@click.argument("version", type=click.IntRange(min=1), required=False)
@_BASE_PATH
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def show(model_name: str, version: int | None, base_path: str, as_json: bool) -> None:
    """Show a version's manifest (default: the latest version)."""
    repo = ModelRepository(base_path)
    with _errors():
        if version is None:
            version = repo.latest(model_name)
            if version is None:
                raise click.ClickException(f"Model {model_name!r} has no versions under {base_path}.")
        manifest = repo.manifest(model_name, version)
        path = repo.version_path(model_name, version)
        from tfstack.export._profile import read_profile

        profile = read_profile(path)
    if as_json:
        click.echo(json.dumps(manifest | ({"data_profile": profile} if profile is not None else {}), indent=2))
        return
    _print_manifest(manifest, str(path))
    if profile is not None:
        _print_profile(profile)


@models.command("check")
@click.argument("target", metavar="PATH|NAME")
@click.argument("version", type=click.IntRange(min=0), required=False)
@_BASE_PATH
@click.option("--tags", default="serve", show_default=True,
              help="MetaGraph tags to load, comma-separated (TF Serving's --saved_model_tags).")
@click.option("--enable-signature-method-name-check", "--enable_signature_method_name_check", "method_name_check",
              is_flag=True, help="Fail on what TF Serving refuses when started with --enable_signature_method_name_check.")
@click.option("--strict", is_flag=True, help="Also fail when a signature could not be exercised.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(target: str, version: int | None, base_path: str, tags: str, method_name_check: bool, strict: bool,
          as_json: bool) -> None:
    """Will TF Serving load this version? Load it as tensorflow_model_server does and run every signature.

    PATH is a version directory, or a model directory (its highest version, or VERSION, is
    checked); NAME is a model under --base-path. Works for any SavedModel, not only tfstack's.
    Exit status: 0 it loads and every exercised signature runs, 1 it does not, 2 bad arguments.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfstack.export._check import check_saved_model

    path = _version_dir(target, version, base_path)
    tag_list = tuple(t for t in tags.split(",") if t)
    if not tag_list:
        raise click.BadParameter(f"give at least one tag. Received: --tags={tags!r}", param_hint="--tags")
    report = check_saved_model(path, tags=tag_list, method_name_check=method_name_check)
    failures = report.failures
    if strict:
        failures += [f"signature {c.signature_name!r} was not exercised: {c.detail}" for c in report.not_exercised]
    if as_json:
        click.echo(json.dumps(report.to_json() | {"ok": not failures, "failures": failures}, indent=2))
    else:
        _print_report(report, failures)
    raise SystemExit(1 if failures else 0)


def _version_dir(target: str, version: int | None, base_path: str) -> Path:
    """The version directory PATH|NAME [VERSION] names; click.BadParameter (exit 2) if it names none."""
    path = Path(target)
    if path.is_dir():
        numeric = version_directories(path)
        looks_like_version = any((path / f).exists() for f in ("saved_model.pb", "saved_model.pbtxt", "model.tflite"))
        if not numeric or looks_like_version:
            if version is not None:
                raise click.BadParameter(
                    f"{target} is a version directory; VERSION is only for a model directory. Received: VERSION={version}",
                    param_hint="VERSION",
                )
            return path
        return _pick_version(numeric, version, where=str(path))
    if path.exists():
        raise click.BadParameter(f"{target} is a file; expected a version directory, a model directory or a model name.",
                                 param_hint="PATH|NAME")
    repo = ModelRepository(base_path)
    try:
        versions = {v: repo.version_path(target, v) for v in repo.versions(target)}
    except (ValueError, TypeError, ExportError) as exc:
        raise click.BadParameter(
            f"{target!r} is neither an existing directory nor a model under --base-path {base_path}: {exc}",
            param_hint="PATH|NAME",
        ) from exc
    if not versions:
        raise click.BadParameter(
            f"{target!r} is neither an existing directory nor a model with versions under --base-path {base_path}.",
            param_hint="PATH|NAME",
        )
    return _pick_version(versions, version, where=f"model {target!r} under {base_path}")


def _pick_version(versions: dict[int, Path], version: int | None, *, where: str) -> Path:
    if version is None:
        return versions[max(versions)]  # TF Serving's default policy serves the latest version
    if version not in versions:
        raise click.BadParameter(f"{where} has no version {version}. Available: {sorted(versions)}", param_hint="VERSION")
    return versions[version]


def _print_report(report: Any, failures: list[str]) -> None:
    kind = "TF Lite model" if report.format == "tflite" else f"SavedModel, tags {','.join(report.tags)}"
    click.echo(f"Checking {report.path} ({kind}) the way TF Serving loads it")
    if report.load_error:
        click.echo("  load: FAILED")
    else:
        click.echo(f"  load: ok ({report.load_seconds:.2f}s)")
    if report.warmup or report.warmup_error:
        click.echo(f"  warmup: {'FAILED' if report.warmup_error else report.warmup}")
    width = max([len(c.signature_name) for c in report.signatures] + [9])
    for signature in report.signatures:
        method = signature.method_name.rsplit("/", 1)[-1] or "-"
        status = signature.status.upper() if signature.status != "ok" else "ok"
        line = f"  {signature.signature_name:<{width}}  {method:<9} {status:<13} {signature.inputs}"
        click.echo(line.rstrip())
        if signature.status == "not exercised":
            click.echo(f"      not exercised: {signature.detail}")
        for note in signature.notes:
            click.echo(f"      note: {note}")
    for note in report.notes:
        click.echo(f"  note: {note}")
    if failures:
        for failure in failures:
            click.echo(f"FAILED: {failure}")
        return
    ran = sum(1 for c in report.signatures if c.status == "ok")
    skipped = len(report.not_exercised)
    summary = f"OK: loads and {ran} of {len(report.signatures)} signature(s) ran"
    if skipped:
        summary += f"; {skipped} not exercised (see above), so not proven"
    if not report.method_name_check and any(c.problems for c in report.signatures):
        summary += "; with --enable_signature_method_name_check some requests would be refused (see notes)"
    click.echo(summary + ".")


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn repository errors and bad names into one-line ClickExceptions (no traceback)."""
    try:
        yield
    except (ExportError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc


def _version_row(repo: ModelRepository, model_name: str, version: int, *, latest: bool) -> tuple[str, ...]:
    label = f"{version} (latest)" if latest else str(version)
    try:
        manifest = repo.manifest(model_name, version)
    except CorruptVersionError as exc:
        return label, "-", "-", f"corrupt: {exc}"
    metric = key_metric(manifest)
    metric_text = f"{metric[0]}={metric[1]:.4g}" if metric else "-"
    return label, str(manifest.get("created", "-")), metric_text, "ok"


def _print_manifest(manifest: dict[str, Any], path: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    dataset = manifest.get("dataset") or {}
    libraries = manifest.get("library_versions") or {}
    summary = Table(title=f"{manifest.get('model_name')} version {manifest.get('version')}", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    for field, value in (
        ("path", path),
        ("created", manifest.get("created")),
        ("task", manifest.get("task")),
        ("dataset", f"{dataset.get('name', '-')} ({dataset.get('fingerprint', 'no fingerprint')})"),
        ("classes", ", ".join(manifest.get("class_names") or []) or "-"),
        ("parent version", manifest.get("parent_version") or "-"),
        ("git commit", manifest.get("git_commit") or "-"),
        ("libraries", ", ".join(f"{k} {v}" for k, v in libraries.items())),
    ):
        summary.add_row(field, str(value))
    console.print(summary)

    scalars = {k: v for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if scalars:
        metrics = Table(title="test metrics")
        metrics.add_column("metric")
        metrics.add_column("value", justify="right")
        for name, value in scalars.items():
            metrics.add_row(name, f"{value:.6g}")
        console.print(metrics)

    signatures = Table(title="signatures")
    for column in ("signature", "", "name", "dtype", "shape"):
        signatures.add_column(column)
    for name, signature in (manifest.get("signatures") or {}).items():
        for direction in ("inputs", "outputs"):
            for tensor, info in (signature.get(direction) or {}).items():
                shape = info.get("shape")
                signatures.add_row(name, direction[:-1], tensor, str(info.get("dtype")),
                                   "unknown" if shape is None else str(shape))
    console.print(signatures)


_SPARKS = " ▁▂▃▄▅▆▇█"


def _sparkline(counts: list[int]) -> str:
    top = max(counts) if counts else 0
    return "".join(_SPARKS[0 if not top else max(1 if c else 0, round(8 * c / top))] for c in counts)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _print_profile(profile: dict[str, Any]) -> None:
    """The data profile: one row per feature, then the label and prediction distributions."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"data profile ({profile.get('source', '-')}, {profile.get('rows', '-')} rows)")
    for column in ("feature", "dtype", "shape", "values", "missing", "mean", "std", "min", "median", "max"):
        table.add_column(column, justify="right" if column not in ("feature", "dtype", "shape") else "left")
    table.add_column("distribution", overflow="fold")
    for feature in profile.get("features") or []:
        shape = "x".join(str(d) for d in feature.get("shape") or []) or "scalar"
        if feature.get("kind") == "string":
            top = ", ".join(f"{value} {count}" for value, count in (feature.get("top_k") or [])[:5])
            table.add_row(feature["name"], feature["dtype"], shape, str(feature.get("count")), str(feature.get("missing")),
                          "-", "-", "-", "-", "-", f"{feature.get('distinct')} distinct: {top}")
            continue
        histogram = feature.get("histogram") or {}
        table.add_row(
            feature["name"], feature["dtype"], shape, str(feature.get("count")), str(feature.get("missing")),
            _number(feature.get("mean")), _number(feature.get("std")), _number(feature.get("min")),
            _number((feature.get("quantiles") or {}).get("0.5")), _number(feature.get("max")),
            _sparkline(histogram.get("counts") or []),
        )
    console.print(table)
    names = profile.get("class_names") or []
    for key, title in (("labels", "test labels"), ("predictions", "test predictions")):
        outcome = profile.get(key)
        if not outcome:
            continue
        if outcome.get("kind") == "classes":
            total = max(1, outcome.get("count") or 0)
            parts = [f"{names[i] if i < len(names) else i}: {c / total:.1%}" for i, c in enumerate(outcome.get("counts") or [])]
            console.print(f"{title}: " + ", ".join(parts))
        else:
            quantiles = outcome.get("quantiles") or {}
            console.print(f"{title}: mean {_number(outcome.get('mean'))}, median {_number(quantiles.get('0.5'))}, "
                          f"range {_number(outcome.get('min'))}..{_number(outcome.get('max'))}")


@click.command("export", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.Path(exists=True))
@click.option("--model-name", required=True, help="The served model's name: <base-path>/<model-name>/<version>/.")
@_BASE_PATH
@click.option("--version", type=click.IntRange(min=1), default=None, help="Version number. [default: latest + 1]")
@click.option("--input", "inputs", multiple=True, metavar="NAME[:DTYPE][:SHAPE]",
              help="Keras models: one per model input, in order, e.g. pixels:float32:8x8. [default: the model's own]")
@click.option("--class-names", default=None, help="Classification: comma-separated labels of the output columns.")
@click.option("--regression", is_flag=True, help="The model outputs one value per row (not class probabilities).")
@click.option("--sample", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Real input rows (.npy, .npz, .json or .csv) for verification and warmup records.")
@click.option("--tags", default="serve", show_default=True, help="SavedModel sources: MetaGraph tags TF Serving loads.")
@click.option("--warmup-from", "warmup_from", multiple=True, metavar="LOGS",
              help="Request logs (file, directory or logging_config prefix); up to 100 of their requests become warmup records.")
@click.option("--allow-schema-change", is_flag=True,
              help="Publish even if the inputs/outputs differ incompatibly from the model's latest version.")
def export_command(source: str, model_name: str, base_path: str, version: int | None, inputs: tuple[str, ...],
                   class_names: str | None, regression: bool, sample: str | None, tags: str,
                   warmup_from: tuple[str, ...], allow_schema_change: bool) -> None:
    """Publish your own model (a .keras/.h5 file or a SavedModel directory) as a TF Serving version.

    The version is checked the way TF Serving loads it (Session loader, every signature, against
    Keras to 1e-5) before it appears, atomically, as <base-path>/<model-name>/<version>/.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfstack.export._external import export_model

    names = tuple(c.strip() for c in class_names.split(",")) if class_names else ()
    if class_names is not None and (not all(names) or len(set(names)) != len(names)):
        raise click.BadParameter(f"give distinct, non-empty labels. Received: {class_names!r}", param_hint="--class-names")
    if regression and names:
        raise click.BadParameter("--class-names is for classification; drop --regression.", param_hint="--class-names")
    try:
        published = export_model(
            source, base_path, model_name=model_name, inputs=list(inputs) or None, class_names=names,
            task="regression" if regression else None, sample=sample, version=version,
            tags=tuple(t for t in tags.split(",") if t), warmup_from=warmup_from,
            allow_schema_change=allow_schema_change,
        )
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    except ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    signatures = ", ".join(sorted(published.manifest.get("signatures") or {}))
    click.echo(f"Published {published.model_name} version {published.version}: {published.path}")
    click.echo(f"Checked the way TF Serving loads it (Session loader); signatures: {signatures or '-'}")


@click.command("monitor", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("logs", nargs=-1, required=True, metavar="LOGS...")
@click.option("--model-name", required=True, help="The served model whose logs to check.")
@click.option("--version", type=click.IntRange(min=1), default=None,
              help="The version whose data profile is the reference. [default: the version most logged]")
@_BASE_PATH
@click.option("--thresholds", "thresholds_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help='JSON file of thresholds, e.g. {"psi": 0.25, "features": {"pixels": {"psi": 0.3}}}.')
@click.option("--window", default=None, metavar="DURATION",
              help="Only requests logged in the last DURATION, e.g. 30m, 6h, 7d (by log_metadata.timestamp_secs).")
@click.option("--skew-version", type=click.IntRange(min=1), default=None,
              help="Also run the logged inputs through this version and report how many rows it answers differently.")
@click.option("--skew-sample", "skew_sample_rows", type=click.IntRange(min=1), default=None, metavar="ROWS",
              help="With --skew-version: run at most this many logged rows (a uniform sample) through both versions. "
                   "[default: 10000]")
@click.option("--json", "json_path", default=None, metavar="FILE", help="Write the JSON report here ('-': stdout).")
@click.option("--plots", "plots_dir", default=None, metavar="DIR", help="Write a PNG per drifted feature here.")
@click.option("--metrics-port", type=click.IntRange(min=1, max=65535), default=None,
              help="Serve Prometheus gauges on 127.0.0.1:PORT and re-check the logs every --interval seconds.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="With --metrics-port: seconds between checks.")
def monitor_command(logs: tuple[str, ...], model_name: str, version: int | None, base_path: str,
                    thresholds_file: str | None, window: str | None, skew_version: int | None,
                    skew_sample_rows: int | None, json_path: str | None,
                    plots_dir: str | None, metrics_port: int | None, interval: float) -> None:
    """Compare logged requests with a version's data profile: drift per feature, prediction drift, skew.

    LOGS are request logs written by `tfstack serve` for logging_config: .tfrecord files,
    directories of them, or a filename_prefix. Exit status: 0 no threshold crossed, 1 drift
    (a threshold crossed), 2 bad arguments.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfstack.export._monitor import SKEW_SAMPLE_ROWS, DriftThresholds, read_drift_thresholds

    try:
        thresholds = read_drift_thresholds(thresholds_file) if thresholds_file else DriftThresholds()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--thresholds") from exc
    seconds = _duration_seconds(window) if window is not None else None
    repo = ModelRepository(base_path)

    def check() -> dict[str, Any]:
        return _monitor_once(repo, logs, model_name, version, thresholds, skew_version, seconds,
                             skew_sample_rows or SKEW_SAMPLE_ROWS)

    report = check()
    _print_monitor(report)
    if json_path:
        text = json.dumps(report, indent=2)
        if json_path == "-":
            click.echo(text)
        else:
            Path(json_path).write_text(text + "\n", encoding="utf-8")
    if plots_dir:
        from tfstack.export._monitor import plot_feature_drift

        Path(plots_dir).mkdir(parents=True, exist_ok=True)
        for feature in report["features"]:
            if feature["drifted"] and plot_feature_drift(feature, Path(plots_dir) / f"drift-{feature['name']}.png"):
                click.echo(f"Plot: {Path(plots_dir) / ('drift-' + feature['name'] + '.png')}")
    if metrics_port is not None:
        report = _serve_monitor_metrics(metrics_port, interval, report, check)
    raise SystemExit(1 if report["drifted"] else 0)


def _duration_seconds(text: str) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([smhd])", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise click.BadParameter(f"expected a duration like 30m, 6h or 7d. Received: {text!r}", param_hint="--window")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _monitor_once(repo: ModelRepository, logs: tuple[str, ...], model_name: str, version: int | None,
                  thresholds: Any, skew_version: int | None, window_seconds: float | None = None,
                  skew_sample_rows: int = 0) -> dict[str, Any]:
    """One pass over the logs, record by record (memory bounded by the profile, not the logs); a
    first pass over the records' metadata only when the version must be picked from the logs."""
    import time
    from collections import Counter

    from tfstack.export._monitor import DriftAccumulator, version_skew
    from tfstack.export._prediction_logs import iter_prediction_logs, log_paths
    from tfstack.export._profile import read_profile

    try:
        paths = log_paths(list(logs))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="LOGS") from exc
    since = time.time() - window_seconds if window_seconds is not None else None

    def records():
        try:
            for entry in iter_prediction_logs(paths, model_name=model_name):
                counted["model"] += 1
                if since is None or entry.timestamp >= since:
                    yield entry
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="LOGS") from exc

    def require_records() -> None:
        if not counted["model"]:
            raise click.ClickException(f"The logs hold no request for model {model_name!r}.")
        if window_seconds is not None and not counted["window"]:
            raise click.ClickException(
                f"The logs hold no request for model {model_name!r} in the last {window_seconds:g} seconds."
            )

    counted: Counter[str] = Counter()
    with _errors():
        if version is None:
            served: Counter[int] = Counter()
            for entry in records():
                counted["window"] += 1
                if entry.version is not None:
                    served[entry.version] += 1
            require_records()
            counted.clear()
            version = served.most_common(1)[0][0] if served else repo.latest(model_name)
            if version is None:
                raise click.ClickException(f"Model {model_name!r} has no versions under {repo.base_path}.")
        path = repo.version_path(model_name, version)
        profile = read_profile(path)
        if profile is None:
            raise click.ClickException(
                f"Version {version} of {model_name!r} has no data profile (assets.extra/data_profile.json); "
                "publish it with `tfstack train`, or `tfstack export --sample`, to get one."
            )
        drift = DriftAccumulator(profile, skew_sample_rows=skew_sample_rows if skew_version is not None else 0)
        for entry in records():
            counted["window"] += 1
            drift.add(entry)
        require_records()
        skew = None
        if skew_version is not None:
            skew = version_skew(drift.skew_sample(), profile, path, repo.version_path(model_name, skew_version),
                                other_version=skew_version, logged_rows=drift.rows, sample_limit=skew_sample_rows)
        return drift.report(model_name=model_name, version=version, thresholds=thresholds, skew=skew)


def _print_monitor(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from tfstack.export._monitor import format_value

    console = Console()
    logs = report["logs"]
    table = Table(title=f"{report['model_name']} version {report['version']}: {report['rows']} logged rows "
                        f"from {logs['records']} requests vs its data profile ({report['profile_source']})")
    for column in ("feature", "psi", "js dist", "out of range", "unknown", "missing", "mean (train)", "drift"):
        table.add_column(column, justify="left" if column in ("feature", "drift") else "right")
    for feature in report["features"]:
        mean = f"{format_value(feature.get('mean'))} ({format_value(feature.get('training_mean'))})" if "mean" in feature else "-"
        table.add_row(
            feature["name"], format_value(feature.get("psi")), format_value(feature.get("js_distance")),
            format_value(feature.get("out_of_range_rate")), format_value(feature.get("unknown_rate")),
            format_value(feature.get("missing_rate")), mean, "DRIFT" if feature["drifted"] else "ok",
        )
    predictions = report.get("predictions")
    if predictions:
        table.add_row("(predictions)", format_value(predictions["psi"]), format_value(predictions["js_distance"]),
                      "-", "-", "-", "-", "DRIFT" if predictions["drifted"] else "ok")
    console.print(table)
    skew = report.get("skew")
    if skew:
        sampled = f" (a sample of the {skew['logged_rows']} logged)" if skew.get("logged_rows", skew["rows"]) > skew["rows"] else ""
        console.print(f"skew against version {skew['other_version']}: {skew['differing_rows']} of {skew['rows']} rows{sampled} "
                      f"answered differently ({skew['rate']:.2%})")
    if report["alerts"]:
        for alert in report["alerts"]:
            console.print(f"DRIFT: {alert}", highlight=False)
    else:
        console.print("OK: no threshold crossed.")


def _serve_monitor_metrics(port: int, interval: float, report: dict[str, Any], check, stop=None) -> dict[str, Any]:
    """Serve gauges per model/version/feature on 127.0.0.1:port, re-checking every `interval` s
    until SIGINT/SIGTERM (or until `stop`, a threading.Event, is set); returns the last report."""
    import signal
    import threading

    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    labels = ["model_name", "version", "feature"]
    gauges = {
        key: Gauge(f"tfstack_monitor_{key}", f"tfstack monitor: {key} of logged inputs vs the data profile", labels,
                   registry=registry)
        for key in ("psi", "js_distance", "out_of_range_rate", "unknown_rate", "missing_rate")
    }
    drifted = Gauge("tfstack_monitor_drifted", "1 when a threshold is crossed", ["model_name", "version", "feature"],
                    registry=registry)
    prediction_psi = Gauge("tfstack_monitor_prediction_psi", "PSI of served predictions vs the test split's",
                           ["model_name", "version"], registry=registry)
    skew_rate = Gauge("tfstack_monitor_skew_rate", "share of logged rows two versions answer differently",
                      ["model_name", "version", "other_version"], registry=registry)
    rows = Gauge("tfstack_monitor_rows", "logged rows checked", ["model_name", "version"], registry=registry)

    def publish(current: dict[str, Any]) -> None:
        model, version = current["model_name"], str(current["version"])
        for feature in current["features"]:
            for key, gauge in gauges.items():
                if feature.get(key) is not None:
                    gauge.labels(model, version, feature["name"]).set(feature[key])
            drifted.labels(model, version, feature["name"]).set(1 if feature["drifted"] else 0)
        if current.get("predictions"):
            prediction_psi.labels(model, version).set(current["predictions"]["psi"])
        if current.get("skew"):
            skew_rate.labels(model, version, str(current["skew"]["other_version"])).set(current["skew"]["rate"])
        rows.labels(model, version).set(current["rows"])

    publish(report)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    click.echo(f"Serving monitor metrics on http://127.0.0.1:{port}/metrics (Ctrl-C to stop)")
    if stop is None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(interval):
            try:
                report = check()
            except click.ClickException as exc:
                click.echo(f"check failed: {exc.format_message()}", err=True)
                continue
            publish(report)
    finally:
        server.shutdown()
        thread.join(5)
    return report
