"""`tfstack predict` and `tfstack status`: the client from the command line (no TensorFlow)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from tfstack.client._client import ServingClient
from tfstack.client._errors import ServingError

__all__ = ["predict", "status"]


def _check_endpoint(rest: str | None, grpc: str | None) -> None:
    if (rest is None) == (grpc is None):
        raise click.UsageError("Pass exactly one of --rest URL or --grpc TARGET.")


def _connect(rest: str | None, grpc: str | None, timeout: float | None) -> ServingClient:
    _check_endpoint(rest, grpc)
    try:
        if rest is not None:
            return ServingClient.rest(rest, timeout=timeout)
        return ServingClient.grpc(grpc, timeout=timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc)) from exc


def _decode_b64(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_b64(v) for v in value]
    return value


def _array(value: Any) -> Any:
    value = _decode_b64(value)
    return np.array(value, dtype=object) if _has_bytes(value) else value


def _has_bytes(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, bytes)


def read_inputs(path: Path) -> tuple[Any, str | None]:
    """Load predict inputs and an optional signature name from .npy, .npz or .json.

    JSON may be a TF Serving REST body ({"signature_name": ..., "inputs": ...} or
    {"instances": [...]}) or a plain {input name: list} map.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}, None
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"Cannot read {path}: {exc}", param_hint="--input") from exc
    if not isinstance(document, dict):
        raise click.BadParameter(
            f"{path} must hold a JSON object ({{'inputs': ...}}, {{'instances': [...]}} or {{name: values}}). "
            f"Received a JSON {type(document).__name__}.",
            param_hint="--input",
        )
    signature = document.get("signature_name") if isinstance(document.get("signature_name"), str) else None
    if "inputs" in document and "instances" in document:
        raise click.BadParameter(f"{path} has both 'inputs' and 'instances'; keep one.", param_hint="--input")
    if "inputs" in document:
        inputs = document["inputs"]
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            return {k: _array(v) for k, v in inputs.items()}, signature
        return _array(inputs), signature
    if "instances" in document:
        rows = document["instances"]
        if not isinstance(rows, list) or not rows:
            raise click.BadParameter(f"'instances' in {path} must be a non-empty list.", param_hint="--input")
        if isinstance(rows[0], dict) and set(rows[0]) != {"b64"}:
            names = list(rows[0])
            try:
                return {n: _array([row[n] for row in rows]) for n in names}, signature
            except (KeyError, TypeError) as exc:
                raise click.BadParameter(f"Every instance in {path} needs the keys {names}.", param_hint="--input") from exc
        return _array(rows), signature
    return {k: _array(v) for k, v in document.items() if k != "signature_name"}, signature


def _jsonable(array: np.ndarray) -> Any:
    if array.dtype == object:
        def one(item: Any) -> Any:
            if isinstance(item, bytes):
                try:
                    return item.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(item).decode("ascii")}
            return item

        return np.frompyfunc(one, 1, 1)(array).tolist() if array.ndim else one(array.item())
    return array.tolist()


def _dump(document: Any) -> str:
    # allow_nan writes NaN/Infinity the way TF Serving does.
    return json.dumps(document, indent=2, allow_nan=True)


def _fail(exc: ServingError) -> click.ClickException:
    return click.ClickException(str(exc))


_selector_options = [
    click.option("--rest", "rest", metavar="URL", help="REST base URL, e.g. http://localhost:8501."),
    click.option("--grpc", "grpc", metavar="TARGET", help="gRPC target, e.g. localhost:8500."),
    click.option("--version", type=int, default=None, help="Model version (default: latest)."),
    click.option("--label", "version_label", default=None, help="Version label, e.g. canary."),
    click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per call."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables."),
]


def _with_selector(fn: Any) -> Any:
    for option in reversed(_selector_options):
        fn = option(fn)
    return fn


def _check_selector(version: int | None, version_label: str | None) -> None:
    if version is not None and version_label is not None:
        raise click.UsageError("Pass --version or --label, not both.")


@click.command()
@click.argument("model_name")
@_with_selector
@click.option("--signature", "signature_name", default=None, help="Signature name (default: serving_default or the file's).")
@click.option(
    "--input", "input_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FILE.json (a TF Serving REST body or {name: values}), FILE.npy (single input) or FILE.npz.",
)
@click.option("--output-filter", "output_filter", multiple=True, help="Only return this output (repeatable).")
def predict(
    model_name: str,
    rest: str | None,
    grpc: str | None,
    version: int | None,
    version_label: str | None,
    timeout: float,
    as_json: bool,
    signature_name: str | None,
    input_path: Path,
    output_filter: tuple[str, ...],
) -> None:
    """Send a Predict request for MODEL_NAME and print the outputs."""
    _check_endpoint(rest, grpc)
    _check_selector(version, version_label)
    inputs, file_signature = read_inputs(input_path)
    signature = signature_name or file_signature or "serving_default"
    with _connect(rest, grpc, timeout) as client:
        try:
            outputs = client.predict(
                model_name, inputs, version=version, version_label=version_label,
                signature_name=signature, output_filter=list(output_filter),
            )
        except ServingError as exc:
            raise _fail(exc) from exc
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--input") from exc
    if as_json:
        click.echo(_dump({"outputs": {name: _jsonable(array) for name, array in sorted(outputs.items())}}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{model_name} · {signature}", title_justify="left")
    for column in ("output", "dtype", "shape", "values"):
        table.add_column(column, overflow="fold")
    for name, array in sorted(outputs.items()):
        with np.printoptions(threshold=40, edgeitems=3, precision=6, suppress=True):
            text = str(_jsonable(array)) if array.dtype == object else np.array2string(array)
        table.add_row(name, "string" if array.dtype == object else str(array.dtype), str(list(array.shape)), text)
    Console().print(table)


@click.command()
@click.argument("model_name")
@_with_selector
@click.option("--wait", "wait", type=float, default=None, metavar="SECONDS", help="First wait up to SECONDS for the model to be available.")
def status(
    model_name: str,
    rest: str | None,
    grpc: str | None,
    version: int | None,
    version_label: str | None,
    timeout: float,
    as_json: bool,
    wait: float | None,
) -> None:
    """Show the state of MODEL_NAME's versions (exit status 1 if none is available)."""
    _check_selector(version, version_label)
    with _connect(rest, grpc, timeout) as client:
        try:
            if wait is not None:
                client.wait_until_available(model_name, version=version, version_label=version_label, timeout=wait)
            result = client.get_model_status(model_name, version=version, version_label=version_label)
        except ServingError as exc:
            raise _fail(exc) from exc
    if as_json:
        click.echo(_dump({
            "model_name": result.model_name,
            "versions": [
                {"version": v.version, "state": v.state, "error_code": v.error_code, "error_message": v.error_message}
                for v in result.versions
            ],
        }))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{model_name}", title_justify="left")
        for column in ("version", "state", "error"):
            table.add_column(column)
        for v in result.versions:
            style = "green" if v.available else ("red" if v.error_code != "OK" else "yellow")
            error = "" if v.error_code == "OK" else f"{v.error_code}: {v.error_message}"
            table.add_row(str(v.version), f"[{style}]{v.state}[/]", error)
        Console().print(table)
    if not result.available_versions:
        raise SystemExit(1)

