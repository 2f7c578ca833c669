"""The rollout gates on signature summaries and manifest metrics (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from tfstack.serving.rollout._gates import GateError, QualityPolicy, check_quality, check_signatures, compare_outputs, raise_on_failure


def sig(inputs, outputs, name="serving_default"):
    return {name: {"inputs": inputs, "outputs": outputs}}


F4 = {"features": {"dtype": "float32", "shape": [-1, 4]}}
OUT = {"probabilities": {"dtype": "float32", "shape": [-1, 3]}}


def test_identical_and_additive_signatures_pass():
    assert check_signatures(sig(F4, OUT), sig(F4, OUT)).passed
    more = {**sig(F4, {**OUT, "logits": {"dtype": "float32", "shape": [-1, 3]}}), **sig(F4, OUT, "extra")}
    result = check_signatures(sig(F4, OUT), more)
    assert result.passed and "new output 'logits'" in result.describe() and "new signature 'extra'" in result.describe()


def test_a_candidate_accepting_more_shapes_is_compatible():
    wider = {"features": {"dtype": "float32", "shape": [-1, -1]}}
    assert check_signatures(sig(F4, OUT), sig(wider, OUT)).passed
    assert not check_signatures(sig(wider, OUT), sig(F4, OUT)).passed


@pytest.mark.parametrize(
    "candidate, expected",
    [
        (sig({"x": {"dtype": "float32", "shape": [-1, 4]}}, OUT), "input 'features' was removed"),
        (sig({"features": {"dtype": "float64", "shape": [-1, 4]}}, OUT), "dtype changed: float32 -> float64"),
        (sig(F4, {"probabilities": {"dtype": "float32", "shape": [-1, 10]}}), "output 'probabilities' shape changed"),
        (sig(F4, {"scores": {"dtype": "float32", "shape": [-1, 3]}}), "output 'probabilities' was removed"),
        (sig(F4, OUT, "other"), "signature 'serving_default' is missing"),
    ],
)
def test_breaking_changes_fail_unless_allowed(candidate, expected):
    result = check_signatures(sig(F4, OUT), candidate)
    assert not result.passed and expected in result.describe()
    allowed = check_signatures(sig(F4, OUT), candidate, allow_breaking=True)
    assert allowed.passed and "allowed breaking change" in allowed.describe()


def test_quality_compares_in_the_metrics_direction():
    policy = QualityPolicy(max_regression=0.01)
    assert check_quality({"accuracy": 0.9}, {"accuracy": 0.895}, policy).passed
    assert not check_quality({"accuracy": 0.9}, {"accuracy": 0.85}, policy).passed
    assert check_quality({"rmse": 1.0}, {"rmse": 0.5}, policy).passed
    result = check_quality({"rmse": 1.0}, {"rmse": 1.5}, policy)
    assert not result.passed and "rmse=1.5 is worse than stable's 1 by 0.5" in result.describe()


def test_quality_without_candidate_metrics_fails_and_without_stable_uses_the_floor():
    assert "has no test metric" in check_quality({"accuracy": 0.9}, {}, QualityPolicy()).describe()
    assert check_quality(None, {"accuracy": 0.5}, QualityPolicy()).passed
    assert not check_quality(None, {"accuracy": 0.5}, QualityPolicy(floor=0.6)).passed
    with pytest.raises(ValueError, match="metric must be one of"):
        QualityPolicy(metric="speed")


def test_raise_on_failure_lists_every_failed_gate():
    results = [check_signatures(sig(F4, OUT), sig(F4, {})), check_quality({"accuracy": 0.9}, {"accuracy": 0.1}, QualityPolicy())]
    with pytest.raises(GateError, match="(?s)signature gate FAILED.*quality gate FAILED") as info:
        raise_on_failure(results, candidate="Version 2")
    assert len(info.value.results) == 2


def test_compare_outputs_within_tolerance():
    a = {"p": np.array([0.1, 0.9], np.float32), "label": np.array([b"x"], object)}
    assert compare_outputs(a, {"p": np.array([0.1, 0.90001]), "label": np.array(["x"], object)}, tolerance=1e-4) == []
    problems = compare_outputs(a, {"p": np.array([0.2, 0.9]), "label": np.array([b"y"], object)}, tolerance=1e-4)
    assert any("max abs difference" in p for p in problems) and any("string values differ" in p for p in problems)
