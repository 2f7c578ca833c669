"""`assets.extra/manifest.json`: what a version is, where it came from and how good it is."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tfstack.export._spec import ExportSpec, to_jsonable

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def library_versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    try:
        tfstack = metadata.version("tfstack")
    except metadata.PackageNotFoundError:
        tfstack = "unknown"
    return {"tfstack": tfstack, "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version()}


def git_commit() -> str | None:
    """HEAD of the git checkout in the current directory, or None (no git, not a checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def build_manifest(
    spec: ExportSpec,
    *,
    version: int,
    class_names: tuple[str, ...],
    signatures: dict[str, Any],
    files: list[str],
    created: str | None = None,
) -> dict[str, Any]:
    """The manifest dict (JSON-able) for `spec` published as `version`."""
    return to_jsonable(
        {
            "format": MANIFEST_FORMAT,
            "model_name": spec.model_name,
            "version": version,
            "created": created or utc_now(),
            "task": spec.task,
            "features": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape)} for f in spec.features],
            "class_names": list(class_names),
            "library_versions": library_versions(),
            "training_config": spec.training_config,
            "dataset": spec.dataset,
            "metrics": spec.metrics,
            "signatures": signatures,
            "parent_version": spec.parent_version,
            "lineage": spec.lineage,
            "git_commit": git_commit(),
            "files": sorted(files),
        }
    )


def key_metric(manifest: dict[str, Any]) -> tuple[str, float] | None:
    """The one metric worth a column in `models list` (accuracy, else R², else RMSE/MAE)."""
    metrics = manifest.get("metrics") or {}
    for name in ("accuracy", "r2", "rmse", "mae", "loss"):
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return name, float(value)
    return None


def read_signature_summary(path: Path) -> dict[str, Any]:
    """Signature name -> inputs/outputs (dtype, shape with -1 for unknown) as stored in saved_model.pb.

    Read from the protobuf, not from a loaded model, so it shows exactly what TF Serving sees.
    """
    from tensorflow.core.protobuf import saved_model_pb2  # imports TensorFlow: only when called

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    summary: dict[str, Any] = {}
    for name, signature in sorted(saved_model.meta_graphs[0].signature_def.items()):
        if name.startswith("__"):
            continue  # TF's internal __saved_model_init_op
        summary[name] = {
            "method_name": signature.method_name,
            "inputs": {k: _tensor_info(v) for k, v in sorted(signature.inputs.items())},
            "outputs": {k: _tensor_info(v) for k, v in sorted(signature.outputs.items())},
        }
    return summary


def _tensor_info(info: Any) -> dict[str, Any]:
    shape = None if info.tensor_shape.unknown_rank else [int(d.size) for d in info.tensor_shape.dim]
    from tensorflow import dtypes

    return {"dtype": dtypes.as_dtype(info.dtype).name, "shape": shape}
