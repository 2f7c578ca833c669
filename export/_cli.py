"""`tfstack models list|show`: inspect a model repository from the command line."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click

from export._errors import CorruptVersionError, ExportError
from export._manifest import key_metric
from export._repository import ModelRepository

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
