"""`tfstack rollout ...`: the command line of `tfstack.serving.rollout.Rollout`.

Every command works on one models.config (--config) and one model repository (--base-path);
the server is reached with --grpc (reloads by HandleReloadConfigRequest) and/or --rest (then
the server must poll its config file). Several replicas sharing the config form a fleet:
--grpc/--rest repeated (paired in order), --servers-file, or dns:///NAME:PORT for every address
of a name (a Kubernetes headless Service). Each step logs what it changed on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from tfstack.serving._errors import ServerError

@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Report rollout, export and argument errors as one clean line (exit 1), not a traceback."""
    from tfstack import export

    try:
        yield
    except (ServerError, export.ExportError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname).1s rollout] %(message)s")
    logging.getLogger("tfstack.rollout").setLevel(logging.DEBUG if verbose else logging.INFO)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# --config is checked when a step runs, not here, so `tfstack rollout STEP --help` works without it.
@click.option("--config", "config_file", default=None, envvar="TFSTACK_MODEL_CONFIG", show_envvar=True,
              type=click.Path(dir_okay=False), help="The models.config the server reads (--model_config_file). Required.")
@click.option("--base-path", default="./models", show_default=True, type=click.Path(file_okay=False),
              help="Model repository root: <base-path>/<model>/<version>/.")
@click.option("--grpc", "grpc_targets", multiple=True, envvar="TFSTACK_GRPC", show_envvar=True,
              help="Server gRPC address host:port (reloads through HandleReloadConfigRequest). Repeat for a fleet; "
                   "dns:///NAME:PORT stands for every address NAME resolves to (a headless Service).")
@click.option("--rest", "rest_urls", multiple=True, envvar="TFSTACK_REST", show_envvar=True,
              help="Server REST URL http://host:port (with --grpc: also checked, one per --grpc in the same order; "
                   "alone: rely on config polling). dns:///NAME:PORT as for --grpc.")
@click.option("--servers-file", default=None, type=click.Path(dir_okay=False, exists=True),
              help="A file listing the replicas, one `GRPC_TARGET [REST_URL]` per line (- for none, # comments).")
@click.option("--no-reload-rpc", is_flag=True, help="Do not call HandleReloadConfigRequest; wait for the server's config polling.")
@click.option("--load-timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for a version or label.")
@click.option("--lock-timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for another rollout step.")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def rollout(ctx: click.Context, config_file, base_path, grpc_targets, rest_urls, servers_file, no_reload_rpc,
            load_timeout, lock_timeout, verbose) -> None:
    """Publish, canary, promote, rollback and retire model versions (TF Serving or tfstack serve)."""
    _configure_logging(verbose)
    # TensorFlow's C++ INFO lines would bury what each step changed; users can still override this.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ctx.obj = {
        "config_file": config_file,
        "base_path": base_path,
        "grpc_targets": grpc_targets,
        "rest_urls": rest_urls,
        "servers_file": servers_file,
        "use_reload_rpc": not no_reload_rpc,
        "load_timeout": load_timeout,
        "lock_timeout": lock_timeout,
    }


def _rollout(ctx: click.Context, *, need_server: bool, **policy: Any):
    from tfstack.serving.rollout._control import LiveServer
    from tfstack.serving.rollout._rollout import Rollout, RolloutPolicy

    obj = ctx.obj
    if not obj["config_file"]:
        raise click.UsageError(
            "Missing option '--config' (or TFSTACK_MODEL_CONFIG): the models.config file the server reads.", ctx=ctx
        )
    server = None
    if obj["grpc_targets"] or obj["rest_urls"] or obj["servers_file"]:
        from tfstack.serving.rollout._fleet import Fleet, resolve_replicas

        replicas = [
            LiveServer(grpc_target=address.grpc_target, rest_url=address.rest_url,
                       use_reload_rpc=obj["use_reload_rpc"], reload_timeout=max(obj["load_timeout"], 30.0))
            for address in resolve_replicas(obj["grpc_targets"], obj["rest_urls"], servers_file=obj["servers_file"])
        ]
        server = replicas[0] if len(replicas) == 1 else Fleet(replicas)
    elif need_server:
        raise click.UsageError("This step needs the server: give --grpc HOST:PORT and/or --rest URL (or --servers-file).")
    return Rollout(
        obj["config_file"],
        obj["base_path"],
        server=server,
        policy=RolloutPolicy(load_timeout=obj["load_timeout"], lock_timeout=obj["lock_timeout"], **policy),
    )


def _print_state(state) -> None:
    canary = state.canary if state.canary is not None else f"{state.stable} (no canary)"
    line = f"stable={state.stable} canary={canary}"
    if state.previous is not None:
        line += f" previous={state.previous}"
    click.echo(line)


@rollout.command()
@click.argument("model_name")
@click.pass_context
def status(ctx: click.Context, model_name: str) -> None:
    """Versions on disk, in the config, on the server; labels; manifest metrics."""
    import time

    from rich.console import Console
    from rich.table import Table

    with _errors():
        result = _rollout(ctx, need_server=False).status(model_name)
    table = Table(title=f"{model_name} ({ctx.obj['config_file']})")
    for column in ("version", "on disk", "in config", "server", "labels", "metric", "created"):
        table.add_column(column, no_wrap=True)
    for row in result.versions:
        metric = f"{row.metric[0]}={row.metric[1]:.4g}" if row.metric else "-"
        table.add_row(
            str(row.version),
            "yes" if row.on_disk else ("[red]missing[/red]" if row.in_config else "-"),
            "yes" if row.in_config else "-",
            row.server_state or "-",
            ", ".join(row.labels) or "-",
            metric,
            row.created or "-",
        )
    console = Console()
    console.print(table)
    if result.replicas:
        fleet = Table(title=f"{len(result.replicas)} replica{'s' if len(result.replicas) > 1 else ''}")
        for column in ("replica", "versions", "labels", "matches the config"):
            fleet.add_column(column, no_wrap=column != "matches the config")
        for replica in result.replicas:
            if replica.error is not None:
                fleet.add_row(replica.name, "[red]unreachable[/red]", "-", f"[red]no: {replica.error}[/red]")
                continue
            versions = ", ".join(f"{v} {state}" for v, state in sorted(replica.states.items())) or "-"
            labels = ", ".join(f"{k} -> {v if v is not None else 'nothing'}" for k, v in sorted(replica.labels.items())) or "-"
            match = "yes" if not replica.differences else "[yellow]no: " + "; ".join(replica.differences) + "[/yellow]"
            fleet.add_row(replica.name, versions, labels, match)
        console.print(fleet)
    state = result.state
    if state is None:
        console.print(f"{model_name} is not managed by rollout yet (run `tfstack rollout init {model_name}`).")
        return
    parts = [f"stable={state.stable}", f"canary={state.canary if state.canary is not None else '-'}"]
    if state.previous is not None:
        left = (state.previous_until or 0) - time.time()
        parts.append(f"previous={state.previous} ({f'loaded for {left:.0f}s more' if left > 0 else 'unloaded'})")
    if state.pending:
        parts.append(f"[yellow]unfinished step: {state.pending} (any step, e.g. finalize, completes it)[/yellow]")
    console.print("  ".join(parts))


@rollout.command()
@click.argument("model_name")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--version", type=int, default=None, help="Publish as this version (default: highest + 1).")
@click.pass_context
def publish(ctx: click.Context, model_name: str, source: str, version: int | None) -> None:
    """Publish an exported SavedModel directory (or a run directory holding one) as a new version."""
    with _errors():
        published = _rollout(ctx, need_server=False).publish(model_name, source, version=version)
    click.echo(f"Published {published.model_name} version {published.version}: {published.path}")


@rollout.command()
@click.argument("model_name")
@click.option("--version", type=int, default=None, help="The first stable version (default: the latest on disk).")
@click.pass_context
def init(ctx: click.Context, model_name: str, version: int | None) -> None:
    """Start managing MODEL_NAME in the config (without a server: write the label-free entry)."""
    with _errors():
        state = _rollout(ctx, need_server=False).init(model_name, version)
    _print_state(state)


@rollout.command()
@click.argument("model_name")
@click.argument("version", type=int)
@click.option("--allow-breaking", is_flag=True, help="Let an incompatible signature through (still reported).")
@click.option("--skip-gate", "skip_gates", multiple=True, type=click.Choice(["signature", "quality", "infra"]),
              help="Do not run this gate (repeatable).")
@click.option("--metric", default=None, help="Quality gate metric (default: accuracy, else r2, rmse, ...).")
@click.option("--max-regression", type=float, default=0.01, show_default=True,
              help="Largest allowed worsening of the metric vs stable (absolute).")
@click.option("--floor", type=float, default=None, help="Absolute bound the metric must reach.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True, help="Infra gate output tolerance.")
@click.pass_context
def canary(ctx, model_name, version, allow_breaking, skip_gates, metric, max_regression, floor, tolerance) -> None:
    """Gate VERSION, load it beside stable and point the `canary` label at it."""
    from tfstack.serving.rollout._gates import QualityPolicy

    with _errors():
        quality = QualityPolicy(metric=metric, max_regression=max_regression, floor=floor)
        state = _rollout(
            ctx, need_server=True, quality=quality, allow_breaking=allow_breaking,
            skip_gates=tuple(skip_gates), infra_tolerance=tolerance,
        ).canary(model_name, version)
    _print_state(state)


@rollout.command()
@click.argument("model_name")
@click.option("--grace", type=float, default=600.0, show_default=True,
              help="Seconds the previous stable stays loaded for instant rollback (0: unload now).")
@click.pass_context
def promote(ctx: click.Context, model_name: str, grace: float) -> None:
    """Move `stable` to the canary version."""
    with _errors():
        state = _rollout(ctx, need_server=True).promote(model_name, grace_seconds=grace)
    _print_state(state)


@rollout.command()
@click.argument("model_name")
@click.pass_context
def rollback(ctx: click.Context, model_name: str) -> None:
    """Drop the canary; or, with none, move `stable` back to the previous version."""
    with _errors():
        state = _rollout(ctx, need_server=True).rollback(model_name)
    _print_state(state)


@rollout.command()
@click.argument("model_name")
@click.pass_context
def finalize(ctx: click.Context, model_name: str) -> None:
    """Finish unfinished steps and unload the previous stable once its grace period is over."""
    with _errors():
        state = _rollout(ctx, need_server=True).finalize(model_name)
    _print_state(state)


@rollout.command()
@click.argument("model_name")
@click.option("--keep", type=int, default=2, show_default=True, help="Newest versions to keep on disk.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.pass_context
def retire(ctx: click.Context, model_name: str, keep: int, dry_run: bool) -> None:
    """Remove old versions from disk (never one the config references)."""
    with _errors():
        removed = _rollout(ctx, need_server=False).retire(model_name, keep=keep, dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} versions: {removed}" if removed else "Nothing to remove.")


@rollout.command()
@click.argument("model_name")
@click.option("--duration", type=float, default=300.0, show_default=True, help="Seconds to watch.")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between judgements.")
@click.option("--probe-requests", type=int, default=20, show_default=True,
              help="Sample requests per label, window and replica (the probe sends assets.extra/sample_request.json; "
                   "a fleet's counts are added up).")
@click.option("--max-error-rate-increase", type=float, default=0.01, show_default=True)
@click.option("--max-p99-ratio", type=float, default=1.5, show_default=True)
@click.option("--min-p99-increase-ms", type=float, default=5.0, show_default=True)
@click.option("--drift-thresholds", "drift_thresholds_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also roll back when the canary's logged inputs drift from its version's data profile: the JSON "
                   "thresholds file of `tfstack monitor --thresholds` ({} for its defaults).")
@click.option("--logs", "log_targets", multiple=True, metavar="PATH",
              help="With --drift-thresholds: the server's request logs (a filename_prefix, a directory or .tfrecord "
                   "files; repeatable). [default: the model's logging_config filename_prefix in --config]")
@click.option("--drift-min-rows", type=click.IntRange(min=1), default=100, show_default=True,
              help="With --drift-thresholds: logged canary rows needed before drift is judged.")
@click.pass_context
def watch(ctx, model_name, duration, interval, probe_requests, max_error_rate_increase, max_p99_ratio, min_p99_increase_ms,
          drift_thresholds_file, log_targets, drift_min_rows) -> None:
    """Roll the canary back when its errors or p99 latency are worse than stable's (or its inputs drift)."""
    from tfstack.serving.rollout._gates import read_sample_request, sample_arrays
    from tfstack.serving.rollout._watch import ProbeMetrics, WatchThresholds

    min_rows_given = ctx.get_parameter_source("drift_min_rows") is not click.core.ParameterSource.DEFAULT
    if drift_thresholds_file is None and (log_targets or min_rows_given):
        raise click.UsageError("--logs and --drift-min-rows need --drift-thresholds FILE (the drift check's thresholds).")
    with _errors():
        runner = _rollout(ctx, need_server=True)
        state = runner.state(model_name)
        if state is None:
            raise click.ClickException(f"{model_name} is not managed by rollout yet (run `tfstack rollout init {model_name}`).")
        drift = None if drift_thresholds_file is None else _drift_check(runner, model_name, drift_thresholds_file,
                                                                          log_targets, drift_min_rows)
        probe_version = state.canary if state.canary is not None else state.stable
        path = runner.repository.version_path(model_name, probe_version)
        signature_name, raw = read_sample_request(path)
        manifest = runner.repository.manifest(model_name, probe_version)
        dtypes = {k: v["dtype"] for k, v in manifest.get("signatures", {}).get(signature_name, {}).get("inputs", {}).items()}
        clients = list(runner.server.control_clients)  # one per replica
        metrics = ProbeMetrics(clients, model_name, sample_arrays(raw, dtypes), requests=probe_requests, signature_name=signature_name)
        thresholds = WatchThresholds(
            max_error_rate_increase=max_error_rate_increase, max_p99_ratio=max_p99_ratio,
            min_p99_increase_ms=min_p99_increase_ms, min_requests=min(probe_requests, 20),
        )
        result = runner.watch(model_name, metrics, thresholds=thresholds, drift=drift, duration=duration, interval=interval)
    if result.rolled_back:
        click.echo(f"Rolled back: {result.reason}")
        sys.exit(3)
    click.echo(f"Canary healthy after {result.checks} checks.")
    if drift is not None:
        report = drift.last_report
        if report is None:
            click.echo(f"Drift not judged: no request the canary answered was found in {', '.join(drift.logs)}.")
        elif report["rows"] < drift.min_rows:
            click.echo(f"Drift not judged: {report['rows']} logged canary rows, fewer than --drift-min-rows {drift.min_rows}.")
        else:
            click.echo(f"No drift in {report['rows']} logged canary rows against version {report['version']}'s data profile.")


def _drift_check(runner: Any, model_name: str, thresholds_file: str, log_targets: tuple[str, ...], min_rows: int) -> Any:
    """The watch's DriftCheck: thresholds as `tfstack monitor --thresholds`, logs from --logs or logging_config."""
    from tfstack import export
    from tfstack.serving.rollout._state import find_entry, request_log_prefix
    from tfstack.serving.rollout._watch import DriftCheck

    try:
        thresholds = export.read_drift_thresholds(thresholds_file)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--drift-thresholds") from exc
    logs: list[str] = list(log_targets)
    if not logs:
        entry = find_entry(runner.config.read(), model_name)
        prefix = request_log_prefix(entry) if entry is not None else None
        if prefix is None:
            raise click.UsageError(
                f"Model {model_name!r} has no logging_config in {runner.config.path}, so there are no request logs "
                "to check for drift: give --logs PATH, or add logging_config to its entry."
            )
        logs = [prefix]
    return DriftCheck(logs, thresholds, min_rows=min_rows)
