"""Bad arguments raise TypeError/ValueError before any I/O, with what was received."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tfstack.client import RetryPolicy, ServingClient, TlsConfig


class _NoIO:
    """A transport that fails the test if anything is sent."""

    def __init__(self) -> None:
        from tfstack.client._rest import RestCodec

        self.codec = RestCodec()

    def send(self, request, timeout):
        raise AssertionError(f"I/O happened: {request}")

    def close(self) -> None:
        pass


@pytest.fixture
def client() -> ServingClient:
    return ServingClient(_NoIO())


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"model_name": 3}, TypeError, "model_name must be a str. Received: model_name=3"),
        ({"model_name": ""}, ValueError, "model_name must not be empty"),
        ({"version": "1"}, TypeError, "version must be an int. Received: version='1'"),
        ({"version": True}, TypeError, "version must be an int"),
        ({"version": -1}, ValueError, "version must be >= 0"),
        ({"version": 1, "version_label": "x"}, ValueError, "either version or version_label"),
        ({"version_label": ""}, ValueError, "version_label must be a non-empty name"),
        ({"version_label": "a/b"}, ValueError, "without '/'"),
        ({"signature_name": None}, TypeError, "signature_name must be a str"),
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
        ({"timeout": "5"}, TypeError, "timeout must be a number"),
        ({"output_filter": "y"}, TypeError, "output_filter must be a list"),
        ({"output_filter": ["y", "y"]}, ValueError, "duplicate"),
        ({"inputs": {}}, ValueError, "inputs must not be empty"),
        ({"inputs": {"x": [[1.0], [2.0, 3.0]]}}, ValueError, "not a rectangular array"),
        ({"inputs": {"x": [object()]}}, TypeError, "only str and bytes"),
        ({"inputs": {1: [1.0]}}, TypeError, "Input names must be non-empty str"),
        ({"inputs": object()}, TypeError, "inputs must be a dict of arrays"),
    ],
)
def test_predict_rejects_bad_arguments_before_io(client, kwargs, error, text):
    call = {"model_name": "m", "inputs": {"x": [1.0]}, **kwargs}
    with pytest.raises(error, match=re.escape(text)):
        client.predict(call.pop("model_name"), call.pop("inputs"), **call)


@pytest.mark.parametrize(
    "examples, context, error, text",
    [
        ({"x": 1.0}, None, TypeError, "examples must be a list of dicts"),
        ([], None, ValueError, "examples must not be empty"),
        ([1.0], None, TypeError, "examples[0] must be a dict"),
        ([{"x": None}], None, TypeError, "Feature examples[0]['x'] must hold numbers"),
        ([{"x": [1.0, "a"]}], None, TypeError, "mixes strings and numbers"),
        ([{"x": [[1.0]]}], None, TypeError, "must hold numbers"),
        ([{"x": 1.0}], [1], TypeError, "context must be a dict"),
    ],
)
def test_classify_rejects_bad_examples_before_io(client, examples, context, error, text):
    with pytest.raises(error, match=re.escape(text)):
        client.classify("m", examples, context=context)


def test_metadata_status_and_wait_validate_too(client):
    with pytest.raises(TypeError):
        client.get_model_metadata(None)
    with pytest.raises(ValueError):
        client.get_model_status("m", version=-3)
    with pytest.raises(ValueError):
        client.wait_until_available("m", version=1, version_label="x")


def test_constructors_validate_addresses():
    with pytest.raises(ValueError, match="http:// or https://"):
        ServingClient.rest("localhost:8501")
    with pytest.raises(ValueError, match="no http:// scheme"):
        ServingClient.grpc("http://localhost:8500")
    with pytest.raises(TypeError, match="target must be a str"):
        ServingClient.grpc(8500)
    with pytest.raises(ValueError, match="json_format must be one of"):
        ServingClient.rest("http://h:1", json_format="rows")
    with pytest.raises(ValueError, match="max_message_size must be a positive int"):
        ServingClient.grpc("h:1", max_message_size=0)
    with pytest.raises(TypeError, match="retry must be a RetryPolicy"):
        ServingClient.rest("http://h:1", retry=3)


def test_options_validate():
    with pytest.raises(ValueError, match="max_attempts must be an int >= 1"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="jitter must be in"):
        RetryPolicy(jitter=2)
    with pytest.raises(ValueError, match="needs both certificate_chain and private_key"):
        TlsConfig(certificate_chain=b"x")


def test_backoff_grows_exponentially_with_bounded_jitter():
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2.0, max_backoff=0.5, jitter=0.2)
    for attempt, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (9, 0.5)]:
        samples = [policy.backoff(attempt) for _ in range(50)]
        assert all(base * 0.8 - 1e-9 <= s <= base * 1.2 + 1e-9 for s in samples)
        assert len(set(samples)) > 1  # jittered


def test_python_floats_become_float32_but_ndarrays_keep_their_dtype():
    from tfstack.client._arguments import inputs

    assert inputs({"x": [1.0, 2.0]})["x"].dtype == np.float32
    assert inputs({"x": np.array([1.0])})["x"].dtype == np.float64
    assert inputs({"x": [1, 2]})["x"].dtype == np.int64
    single = inputs([True, False])
    assert isinstance(single, np.ndarray) and single.dtype == np.bool_


def test_feature_normalisation():
    from tfstack.client._arguments import examples

    normalised, context = examples([{"f": 2.0, "i": 3, "b": True, "s": "a", "raw": b"\xff", "mix": [1, 2.5], "arr": np.ones((2, 2), np.float32), "e": []}], context={"c": 1})
    ex = normalised[0]
    assert ex["f"] == ("float", [2.0])
    assert ex["i"] == ("int64", [3])
    assert ex["b"] == ("int64", [1])
    assert ex["s"] == ("bytes", [b"a"])
    assert ex["raw"] == ("bytes", [b"\xff"])
    assert ex["mix"] == ("float", [1.0, 2.5])
    assert ex["arr"] == ("float", [1.0, 1.0, 1.0, 1.0])
    assert ex["e"] == ("", [])
    assert context == {"c": ("int64", [1])}
