"""Test-split metrics with scikit-learn, and their console table."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str]
) -> tuple[dict[str, Any], list[list[int]]]:
    """Accuracy, macro precision/recall/F1, ROC-AUC, per-class report; and the confusion matrix.

    `labels` are class indices, `probabilities` is [N, C]. ROC-AUC is binary for two classes and
    one-vs-rest macro otherwise; it is None when the test split lacks a class (undefined).
    """
    from sklearn import exceptions as skm_exceptions
    from sklearn import metrics as skm

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    classes = list(range(len(class_names)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    roc_auc: float | None
    try:
        with warnings.catch_warnings():
            # A class absent from the test split makes AUC undefined: we report None, not a warning.
            warnings.simplefilter("ignore", skm_exceptions.UndefinedMetricWarning)
            if len(classes) == 2:
                roc_auc = float(skm.roc_auc_score(labels, probabilities[:, 1]))
            else:
                # Renormalise: float32 softmax rows can sum to 1 +- 1e-7, which roc_auc_score rejects.
                scores = probabilities / probabilities.sum(axis=1, keepdims=True)
                roc_auc = float(skm.roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=classes))
    except ValueError:
        roc_auc = None
    if roc_auc is not None and not math.isfinite(roc_auc):
        roc_auc = None
    metrics: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(labels, predicted)),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
        "f1_macro": float(np.mean(f1)),
        "roc_auc": roc_auc,
        "n_test": int(labels.shape[0]),
        "per_class": {
            str(name): {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
    }
    matrix = skm.confusion_matrix(labels, predicted, labels=classes)
    return metrics, [[int(v) for v in row] for row in matrix]


def regression_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    """MAE, RMSE and R² of `predictions` against `targets`."""
    from sklearn import metrics as skm

    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    return {
        "mae": float(skm.mean_absolute_error(targets, predictions)),
        "rmse": float(math.sqrt(skm.mean_squared_error(targets, predictions))),
        "r2": float(skm.r2_score(targets, predictions)),
        "n_test": int(targets.shape[0]),
    }


def metrics_tables(metrics: dict[str, Any], *, title: str) -> list[Any]:
    """rich Tables: the headline metrics, then (classification) the per-class report."""
    from rich.table import Table

    summary = Table(title=title, title_justify="left")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    for key, value in metrics.items():
        if key == "per_class":
            continue
        summary.add_row(key, "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
    tables = [summary]
    per_class = metrics.get("per_class")
    if per_class:
        report = Table(title="Per-class report (test split)", title_justify="left")
        for column in ("class", "precision", "recall", "f1", "support"):
            report.add_column(column, justify="left" if column == "class" else "right")
        for name, row in per_class.items():
            report.add_row(
                name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"])
            )
        tables.append(report)
    return tables


def confusion_table(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> Any:
    """A rich Table of the confusion matrix: rows are true classes, columns predicted ones."""
    from rich.table import Table

    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true \\ pred")
    for name in class_names:
        table.add_column(str(name), justify="right")
    for name, row in zip(class_names, matrix):
        table.add_row(str(name), *(str(v) if v else "." for v in row))
    return table
