"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from tfstack.training import classification_metrics, regression_metrics


def test_classification_metrics_match_a_hand_computed_case() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    probabilities = np.array(
        [
            [0.8, 0.1, 0.1],  # 0 -> 0
            [0.2, 0.7, 0.1],  # 0 -> 1 (wrong)
            [0.1, 0.8, 0.1],  # 1 -> 1
            [0.1, 0.6, 0.3],  # 1 -> 1
            [0.1, 0.1, 0.8],  # 2 -> 2
            [0.3, 0.3, 0.4],  # 2 -> 2
        ],
        dtype=np.float32,
    )
    metrics, confusion = classification_metrics(labels, probabilities, ("a", "b", "c"))
    assert metrics["accuracy"] == pytest.approx(5 / 6)
    # precision: a 1/1, b 2/3, c 2/2; recall: a 1/2, b 2/2, c 2/2
    assert metrics["precision_macro"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert metrics["recall_macro"] == pytest.approx((0.5 + 1 + 1) / 3)
    f1 = [2 * 1 * 0.5 / 1.5, 2 * (2 / 3) / (2 / 3 + 1), 1.0]
    assert metrics["f1_macro"] == pytest.approx(np.mean(f1))
    assert confusion == [[1, 1, 0], [0, 2, 0], [0, 0, 2]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    # One-vs-rest: class a's scores put both a's above all others (AUC 1) etc.; check against sklearn's definition.
    from sklearn.metrics import roc_auc_score

    expected_auc = np.mean([roc_auc_score(labels == k, probabilities[:, k]) for k in range(3)])
    assert metrics["roc_auc"] == pytest.approx(expected_auc)


def test_binary_roc_auc_uses_the_positive_class_score() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.65, 0.35], [0.2, 0.8]])
    metrics, _ = classification_metrics(labels, probabilities, ("no", "yes"))
    # Positive scores 0.1, 0.6 (neg) vs 0.35, 0.8 (pos): 3 of 4 pairs ranked right.
    assert metrics["roc_auc"] == pytest.approx(0.75)
    assert metrics["accuracy"] == pytest.approx(0.5)


def test_roc_auc_is_none_when_a_class_is_missing_from_the_test_split() -> None:
    metrics, confusion = classification_metrics(np.array([0, 1, 0]), np.eye(3)[[0, 1, 0]], ("a", "b", "c"))
    assert metrics["roc_auc"] is None
    assert metrics["accuracy"] == 1.0
    assert confusion[2] == [0, 0, 0]


def test_regression_metrics_match_a_hand_computed_case() -> None:
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    predictions = np.array([[1.5], [2.0], [2.0], [4.0]])  # Keras shape [N, 1]
    metrics = regression_metrics(targets, predictions)
    assert metrics["mae"] == pytest.approx((0.5 + 0 + 1 + 0) / 4)
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.25 + 1) / 4))
    assert metrics["r2"] == pytest.approx(1 - 1.25 / 5.0)
    assert metrics["n_test"] == 4
