"""Rollout gates: is a candidate version compatible with, as good as, and served like stable?

Three checks, each returning a `GateResult` (never raising for a failed check, so a caller can
report every failure at once):

- `check_signatures`: the candidate accepts every request stable accepts and answers with the
  same outputs (same signature names, input names and dtypes, compatible shapes, same output
  names and dtypes). Additions are fine; anything else is a breaking change.
- `check_quality`: the manifest's test metric is not worse than stable's by more than a margin,
  and is past an absolute floor.
- `check_infra`: the candidate, loaded by the server, answers `assets.extra/sample_request.json`
  over REST and gRPC with the outputs of the same SavedModel run in this process.

The first two read only manifests (no TensorFlow); the infra check loads the SavedModel.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.serving.rollout._errors import GateError, RolloutError

# The gates a rollout runs, in order; RolloutPolicy.skip_gates names some of them.
GATES = ("signature", "quality", "infra")
SAMPLE_REQUEST_FILE = "sample_request.json"
# metric name -> True when higher is better. The first one present in both manifests is used.
METRIC_DIRECTIONS: dict[str, bool] = {
    "accuracy": True,
    "f1_macro": True,
    "roc_auc": True,
    "r2": True,
    "rmse": False,
    "mae": False,
    "loss": False,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GateResult:
    """The outcome of one gate: `passed`, and the reasons (failures or notes) in plain words."""

    gate: str
    passed: bool
    reasons: tuple[str, ...] = ()

    def describe(self) -> str:
        head = f"{self.gate} gate {'passed' if self.passed else 'FAILED'}"
        return head if not self.reasons else f"{head}: " + "; ".join(self.reasons)


def raise_on_failure(results: Sequence[GateResult], *, candidate: str) -> None:
    """Raise GateError naming every failed gate, or return if all passed."""
    failed = [r for r in results if not r.passed]
    if failed:
        lines = "\n".join(f"  - {r.describe()}" for r in failed)
        raise GateError(f"{candidate} did not pass the rollout gates; nothing was changed.\n{lines}", results)


# ---------------------------------------------------------------------------- signatures


def check_signatures(
    stable: Mapping[str, Any], candidate: Mapping[str, Any], *, allow_breaking: bool = False
) -> GateResult:
    """Compare signature summaries (`manifest["signatures"]`: name -> inputs/outputs -> dtype/shape).

    Breaking: a signature of stable is missing, an input is added/removed or changes dtype or
    narrows its shape, an output is removed or changes dtype or shape (`export.compare_signatures`,
    the same rule export applies when publishing onto an existing model). With `allow_breaking`
    the gate passes but still lists what breaks.
    """
    from tfstack.export import compare_signatures

    comparison = compare_signatures(stable, candidate)
    breaks, notes = list(comparison.breaks), list(comparison.notes)
    if breaks and allow_breaking:
        return GateResult(gate="signature", passed=True, reasons=tuple(f"allowed breaking change: {b}" for b in breaks) + tuple(notes))
    if breaks:
        return GateResult(
            gate="signature",
            passed=False,
            reasons=tuple(breaks) + ("pass --allow-breaking if clients are ready for this",),
        )
    return GateResult(gate="signature", passed=True, reasons=tuple(notes))


# ---------------------------------------------------------------------------- quality


@dataclasses.dataclass(frozen=True, kw_only=True)
class QualityPolicy:
    """How much worse than stable a candidate's test metric may be.

    Attributes:
        metric: the metric to compare (default: the first of METRIC_DIRECTIONS in both manifests).
        max_regression: largest allowed absolute worsening vs stable (0.01 = one accuracy point).
        floor: an absolute bound the candidate must reach (a minimum for higher-is-better metrics,
            a maximum for lower-is-better ones); None for no bound.
    """

    metric: str | None = None
    max_regression: float = 0.01
    floor: float | None = None

    def __post_init__(self) -> None:
        if self.metric is not None and self.metric not in METRIC_DIRECTIONS:
            raise ValueError(f"metric must be one of {sorted(METRIC_DIRECTIONS)}. Received: metric={self.metric!r}")
        if isinstance(self.max_regression, bool) or not isinstance(self.max_regression, (int, float)) or self.max_regression < 0:
            raise ValueError(f"max_regression must be a number >= 0. Received: max_regression={self.max_regression!r}")
        if self.floor is not None and (isinstance(self.floor, bool) or not isinstance(self.floor, (int, float))):
            raise ValueError(f"floor must be a number or None. Received: floor={self.floor!r}")


def _metric(metrics: Mapping[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def check_quality(
    stable_metrics: Mapping[str, Any] | None, candidate_metrics: Mapping[str, Any] | None, policy: QualityPolicy
) -> GateResult:
    """Compare test metrics from the two manifests under `policy`.

    Without stable metrics (first rollout, or a version not published by tfstack) only the
    floor applies. A candidate without the metric fails: unmeasured is not "as good".
    """
    candidate_metrics = candidate_metrics or {}
    stable_metrics = stable_metrics or {}
    names = [policy.metric] if policy.metric else list(METRIC_DIRECTIONS)
    name = next((n for n in names if _metric(candidate_metrics, n) is not None), None)
    if name is None:
        return GateResult(
            gate="quality",
            passed=False,
            reasons=(f"the candidate's manifest has no test metric {' / '.join(names)} (found: {sorted(candidate_metrics)})",),
        )
    higher_better = METRIC_DIRECTIONS[name]
    value = _metric(candidate_metrics, name)
    assert value is not None
    reasons: list[str] = []
    passed = True
    if policy.floor is not None:
        if (value < policy.floor) if higher_better else (value > policy.floor):
            passed = False
            reasons.append(f"{name}={value:.4g} is {'below' if higher_better else 'above'} the floor {policy.floor:g}")
    reference = _metric(stable_metrics, name)
    if reference is None:
        reasons.append(f"stable has no {name}; compared with the floor only")
    else:
        worse_by = (reference - value) if higher_better else (value - reference)
        if worse_by > policy.max_regression + 1e-12:
            passed = False
            reasons.append(
                f"{name}={value:.4g} is worse than stable's {reference:.4g} by {worse_by:.4g} "
                f"(allowed: {policy.max_regression:g})"
            )
        else:
            reasons.append(f"{name}={value:.4g} vs stable {reference:.4g}")
    return GateResult(gate="quality", passed=passed, reasons=tuple(reasons))


# ---------------------------------------------------------------------------- infra


def read_sample_request(version_dir: Path) -> tuple[str, dict[str, Any]]:
    """(signature_name, inputs as JSON values) from `assets.extra/sample_request.json`."""
    path = Path(version_dir) / "assets.extra" / SAMPLE_REQUEST_FILE
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RolloutError(
            f"No sample request at {path}: the infra gate needs one (tfstack export writes it). "
            "Skip the gate with --skip-gate infra to roll out anyway."
        ) from exc
    except (OSError, ValueError) as exc:
        raise RolloutError(f"Cannot read the sample request {path}: {exc}") from exc
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, dict):
        raise RolloutError(f"{path} must hold a columnar REST body {{'inputs': {{name: values}}}}. Received keys: {list(body) if isinstance(body, dict) else type(body).__name__}")
    return str(body.get("signature_name") or "serving_default"), inputs


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def sample_arrays(inputs: Mapping[str, Any], dtypes: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The sample request's JSON values as arrays of the signature's dtypes."""
    arrays = {}
    for name, value in inputs.items():
        dtype = dtypes.get(name, "float32")
        if dtype == "string":
            arrays[name] = np.array(_decode(value), dtype=object)
        else:
            arrays[name] = np.asarray(value, dtype=np.dtype(dtype))
    return arrays


def in_process_outputs(version_dir: Path, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the SavedModel's signature in this process (TensorFlow) on `inputs`."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(version_dir))
    function = loaded.signatures[signature_name]
    tensors = {k: tf.constant(v.tolist() if v.dtype == object else v, dtype=tf.string if v.dtype == object else None) for k, v in inputs.items()}
    return {k: v.numpy() for k, v in function(**tensors).items()}


def compare_outputs(expected: Mapping[str, np.ndarray], received: Mapping[str, np.ndarray], *, tolerance: float) -> list[str]:
    """Differences between two output dicts (names, shapes, values within `tolerance`)."""
    problems = []
    if set(expected) != set(received):
        return [f"output names differ: expected {sorted(expected)}, received {sorted(received)}"]
    for name in sorted(expected):
        want, got = np.asarray(expected[name]), np.asarray(received[name])
        if want.shape != got.shape:
            problems.append(f"{name}: shape {list(got.shape)}, expected {list(want.shape)}")
        elif want.dtype.kind in "fc":
            if not np.allclose(got.astype(np.float64), want.astype(np.float64), atol=tolerance, rtol=tolerance, equal_nan=True):
                problems.append(f"{name}: max abs difference {float(np.max(np.abs(got - want))):.3g} > {tolerance:g}")
        elif want.dtype.kind in "OSU":
            norm = np.vectorize(lambda x: x if isinstance(x, bytes) else str(x).encode("utf-8"), otypes=[object])
            if not np.array_equal(norm(want), norm(got)):
                problems.append(f"{name}: string values differ")
        elif not np.array_equal(want, got):
            problems.append(f"{name}: values differ")
    return problems


def check_infra(
    *,
    version_dir: Path,
    signatures: Mapping[str, Any],
    predictors: Mapping[str, Callable[[str, dict[str, np.ndarray]], Mapping[str, np.ndarray]]],
    tolerance: float = 1e-5,
) -> GateResult:
    """Send the sample request through each predictor (protocol -> predict(signature, inputs)) and
    compare with the SavedModel run in-process.

    `predictors` are bound to the candidate version on the real server, e.g.
    `{"rest": lambda sig, x: rest_client.predict(m, x, version=v, signature_name=sig), "grpc": ...}`.
    """
    if not predictors:
        return GateResult(gate="infra", passed=False, reasons=("no server endpoint to check the candidate against",))
    signature_name, raw = read_sample_request(version_dir)
    dtypes = {k: v.get("dtype", "float32") for k, v in signatures.get(signature_name, {}).get("inputs", {}).items()}
    inputs = sample_arrays(raw, dtypes)
    try:
        expected = in_process_outputs(version_dir, signature_name, inputs)
    except Exception as exc:
        return GateResult(gate="infra", passed=False, reasons=(f"the SavedModel does not run in-process: {type(exc).__name__}: {exc}",))
    reasons = []
    passed = True
    for protocol, predict in sorted(predictors.items()):
        try:
            received = predict(signature_name, inputs)
        except Exception as exc:
            passed = False
            reasons.append(f"{protocol}: the request failed: {exc}")
            continue
        problems = compare_outputs(expected, received, tolerance=tolerance)
        if problems:
            passed = False
            reasons.append(f"{protocol}: outputs differ from the in-process model: " + ", ".join(problems))
        else:
            reasons.append(f"{protocol}: {len(next(iter(inputs.values())))} sample rows match")
    return GateResult(gate="infra", passed=passed, reasons=tuple(reasons))
