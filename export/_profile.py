"""`assets.extra/data_profile.json`: what the data a version was trained on looked like.

A profile holds the schema of every raw input and per-feature statistics of the rows it was
built from (numeric: count, missing, mean, std, min, max, quantiles and a fixed-bin histogram;
string: vocabulary with frequencies, top-k, unknown rate), plus the label and prediction
distributions of the test split. `tfstack monitor` compares logged requests against it, bin by
bin, so the bins are stored, not just summary numbers.

A feature with a per-example shape (e.g. 8x8 pixels) is profiled over all its values: a
request whose pixels are inverted or noised changes that distribution, which is what a drift
check needs; per-element means are kept too (`element_mean`) for features of at most
`MAX_ELEMENT_STATS` values per example.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._spec import FeatureSpec, to_jsonable

PROFILE_FILE = "data_profile.json"
PROFILE_FORMAT = 1
HISTOGRAM_BINS = 10
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_VOCABULARY = 1000
TOP_K = 10
MAX_ELEMENT_STATS = 1024


def build_profile(
    features: Sequence[FeatureSpec],
    inputs: Mapping[str, np.ndarray],
    *,
    task: str,
    class_names: Sequence[str] = (),
    source: str,
    labels: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
) -> dict[str, Any]:
    """The data profile (JSON-able) of `inputs`, raw rows per feature.

    Args:
        features: the model's raw inputs (schema).
        inputs: feature name -> array [N, *shape] (the training split, or sample rows).
        task: "classification" or "regression" (how labels and predictions are summarised).
        class_names: classification: label of class i.
        source: where the rows came from, e.g. "training split" or "sample rows.csv".
        labels: test-split labels (class indices, or values), if known.
        predictions: the model's test-split outputs (probabilities [N, C] or values [N]).

    Raises:
        ValueError: a feature is missing from `inputs`, or the arrays differ in rows.
    """
    missing = [f.name for f in features if f.name not in inputs]
    if missing:
        raise ValueError(f"inputs must hold every feature. Missing: {missing}; received: {sorted(inputs)}")
    rows = {int(np.asarray(inputs[f.name]).shape[0]) for f in features}
    if len(rows) != 1:
        raise ValueError(f"every feature must have the same number of rows. Received: rows={sorted(rows)}")
    profile: dict[str, Any] = {
        "format": PROFILE_FORMAT,
        "source": source,
        "rows": rows.pop(),
        "task": task,
        "class_names": list(class_names),
        "features": [feature_profile(f, np.asarray(inputs[f.name])) for f in features],
    }
    if labels is not None:
        profile["labels"] = outcome_distribution(np.asarray(labels), task=task, class_names=class_names)
    if predictions is not None:
        profile["predictions"] = outcome_distribution(
            predicted_outcomes(np.asarray(predictions), task=task), task=task, class_names=class_names
        )
    return to_jsonable(profile)


def feature_profile(feature: FeatureSpec, values: np.ndarray) -> dict[str, Any]:
    """Statistics of one feature's values (all elements of every row)."""
    base = {"name": feature.name, "dtype": feature.dtype, "shape": list(feature.shape)}
    if feature.dtype == "string":
        return base | {"kind": "string"} | string_stats(values)
    return base | {"kind": "numeric"} | numeric_stats(values, per_example_shape=feature.shape)


def numeric_stats(values: np.ndarray, *, per_example_shape: Sequence[int] = ()) -> dict[str, Any]:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    missing = ~np.isfinite(flat)
    present = flat[~missing]
    stats: dict[str, Any] = {"count": int(flat.size), "missing": int(missing.sum())}
    if present.size == 0:
        return stats | {"mean": None, "std": None, "min": None, "max": None, "quantiles": {}, "histogram": None}
    low, high = float(present.min()), float(present.max())
    edges = histogram_edges(low, high)
    counts, _ = np.histogram(present, bins=edges)
    stats |= {
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": low,
        "max": high,
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(present, QUANTILES))},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
    size = int(np.prod(per_example_shape)) if per_example_shape else 1
    if 1 < size <= MAX_ELEMENT_STATS and values.ndim >= 1 and values.shape[0] > 0:
        with np.errstate(invalid="ignore"):
            element = np.nanmean(np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1), axis=0)
        stats["element_mean"] = [None if not np.isfinite(v) else float(v) for v in element]
    return stats


def histogram_edges(low: float, high: float, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Equal-width bin edges over [low, high]; one unit-wide bin for a constant feature."""
    if high <= low:
        return np.array([low - 0.5, low + 0.5])
    return np.linspace(low, high, bins + 1)


def string_stats(values: np.ndarray) -> dict[str, Any]:
    flat = [_text(v) for v in np.asarray(values, dtype=object).reshape(-1)]
    missing = sum(1 for v in flat if v == "")
    counts = Counter(v for v in flat if v != "")
    vocabulary = dict(counts.most_common(MAX_VOCABULARY))
    present = sum(counts.values())
    outside = present - sum(vocabulary.values())
    return {
        "count": len(flat),
        "missing": missing,
        "distinct": len(counts),
        "vocabulary": vocabulary,
        "top_k": [[value, count] for value, count in counts.most_common(TOP_K)],
        # Values the stored vocabulary does not hold (it keeps the MAX_VOCABULARY most common).
        "unknown_rate": outside / present if present else 0.0,
    }


def predicted_outcomes(predictions: np.ndarray, *, task: str) -> np.ndarray:
    """Class indices (argmax of probabilities) or regression values, one per row."""
    predictions = np.asarray(predictions)
    if task == "classification":
        return predictions.argmax(axis=-1) if predictions.ndim > 1 else predictions.astype(np.int64)
    return predictions.reshape(predictions.shape[0], -1)[:, 0] if predictions.ndim > 1 else predictions


def outcome_distribution(values: np.ndarray, *, task: str, class_names: Sequence[str] = ()) -> dict[str, Any]:
    """Class counts (classification) or numeric stats (regression) of labels or predictions."""
    values = np.asarray(values).reshape(-1)
    if task == "classification":
        classes = max(len(class_names), int(values.max()) + 1 if values.size else 0)
        counts = np.bincount(values.astype(np.int64), minlength=classes)
        return {"kind": "classes", "count": int(values.size), "counts": [int(c) for c in counts]}
    return {"kind": "values"} | numeric_stats(values)


def write_profile(profile: Mapping[str, Any], path: Path) -> None:
    import json

    Path(path).write_text(json.dumps(profile, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def read_profile(version_dir: str | Path) -> dict[str, Any] | None:
    """A version's data profile, or None when it has none (published before profiles existed).

    Raises:
        ValueError: the file exists but is not a profile.
    """
    import json

    path = Path(version_dir) / "assets.extra" / PROFILE_FILE
    if not path.is_file():
        return None
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"Cannot read the data profile {path}: {exc}") from exc
    if not isinstance(profile, dict) or not isinstance(profile.get("features"), list):
        raise ValueError(f"{path} is not a tfstack data profile (no 'features' list).")
    return profile


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)
