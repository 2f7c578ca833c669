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
    rows = []
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
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
        return
    _print_manifest(manifest, str(path))


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
        numeric = {int(c.name): c for c in path.iterdir() if re.fullmatch(r"[0-9]+", c.name) and c.is_dir()}
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
@click.option("--allow-schema-change", is_flag=True,
              help="Publish even if the inputs/outputs differ incompatibly from the model's latest version.")
def export_command(source: str, model_name: str, base_path: str, version: int | None, inputs: tuple[str, ...],
                   class_names: str | None, regression: bool, sample: str | None, tags: str,
                   allow_schema_change: bool) -> None:
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
            tags=tuple(t for t in tags.split(",") if t), allow_schema_change=allow_schema_change,
        )
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc
    except ExportError as exc:
        raise click.ClickException(str(exc)) from exc
    signatures = ", ".join(sorted(published.manifest.get("signatures") or {}))
    click.echo(f"Published {published.model_name} version {published.version}: {published.path}")
    click.echo(f"Checked the way TF Serving loads it (Session loader); signatures: {signatures or '-'}")
