"""Every client method over both transports against the fake server: same results, same errors."""

from __future__ import annotations

import numpy as np
import pytest

from tfstack.client import (
    ClassifyResult,
    InvalidInputError,
    ModelMetadata,
    ModelNotFoundError,
    ModelStatus,
    RequestTimeoutError,
    ServerUnavailableError,
    ServingError,
    VersionLabelNotFoundError,
)


def test_predict_returns_a_dict_of_float32_arrays(client):
    outputs = client.predict("half_plus_two", {"x": np.array([1.0, 2.0, 5.0], dtype=np.float32)})
    assert list(outputs) == ["y"]
    assert outputs["y"].dtype == np.float32
    np.testing.assert_allclose(outputs["y"], [3.5, 4.0, 5.5])  # latest = version 2


def test_predict_accepts_a_bare_list_for_a_single_input_signature(client):
    outputs = client.predict("half_plus_two", [1.0, 2.0])
    np.testing.assert_allclose(outputs["y"], [3.5, 4.0])


def test_predict_keeps_shapes(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    outputs = client.predict("half_plus_two", {"x": x})
    assert outputs["y"].shape == (2, 3)
    np.testing.assert_allclose(outputs["y"], 0.5 * x + 3)


@pytest.mark.parametrize("selector, offset", [({}, 3.0), ({"version": 1}, 2.0), ({"version_label": "stable"}, 2.0), ({"version_label": "canary"}, 3.0)])
def test_model_selector_picks_the_version(client, selector, offset):
    outputs = client.predict("half_plus_two", {"x": [2.0]}, **selector)
    np.testing.assert_allclose(outputs["y"], [1.0 + offset])


def test_predict_multi_output_with_strings_and_int64(client):
    outputs = client.predict(
        "half_plus_two", {"x": [1.0, 2.0], "name": ["ann", "bob"]}, signature_name="multi"
    )
    assert sorted(outputs) == ["count", "greeting_bytes", "y"]
    assert outputs["count"].dtype == np.int64
    assert outputs["greeting_bytes"].tolist() == [b"hi ann", b"hi bob"]


def test_output_filter_returns_only_the_requested_outputs(client):
    outputs = client.predict(
        "half_plus_two", {"x": [1.0], "name": ["z"]}, signature_name="multi", output_filter=["count"]
    )
    assert list(outputs) == ["count"]


def test_unknown_output_filter_is_invalid_input(client):
    with pytest.raises(InvalidInputError) as info:
        client.predict("half_plus_two", {"x": [1.0], "name": ["z"]}, signature_name="multi", output_filter=["nope"])
    assert info.value.code == "INVALID_ARGUMENT"
    assert "nope" in info.value.message


def test_row_format_and_gzip_give_the_same_result(make_client, protocol):
    client = make_client(json_format="row", gzip=True)
    outputs = client.predict("half_plus_two", {"x": [1.0, 2.0], "name": ["a", "b"]}, signature_name="multi")
    np.testing.assert_allclose(outputs["y"], [3.5, 4.0])
    assert outputs["greeting_bytes"].tolist() == [b"hi a", b"hi b"]


def test_nan_and_infinity_round_trip(client):
    outputs = client.predict("half_plus_two", {"x": np.array([np.nan, np.inf, -np.inf], np.float32)})
    y = outputs["y"]
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == -np.inf


def test_classify_and_regress(client):
    result = client.classify("half_plus_two", [{"x": 2.0}, {"x": 4.0}], signature_name="classify_x_to_y", version=1)
    assert isinstance(result, ClassifyResult)
    assert [c.scores for c in result.classifications] == [(3.0,), (4.0,)]
    assert result.scores.shape == (2, 1)
    regress = client.regress("half_plus_two", [{"x": 2.0}], signature_name="regress_x_to_y", version_label="stable")
    assert regress.values == (3.0,)


def test_classify_with_context(client):
    result = client.regress("half_plus_two", [{"y": 1.0}], context={"x": 2.0}, signature_name="regress_x_to_y", version=1)
    assert result.values == (3.0,)


def test_int_feature_for_a_float_model_is_the_servers_invalid_input(client):
    with pytest.raises(InvalidInputError, match="Data types don't match"):
        client.regress("half_plus_two", [{"x": 2}], signature_name="regress_x_to_y")


def test_get_model_metadata(client):
    metadata = client.get_model_metadata("half_plus_two", version_label="stable")
    assert isinstance(metadata, ModelMetadata)
    assert metadata.version == 1
    assert "__saved_model_init_op" not in metadata.signatures
    x = metadata.signatures["serving_default"].inputs["x"]
    assert (x.dtype, x.shape, x.name) == ("float32", (None,), "x:0")
    assert metadata.signatures["classify_x_to_y"].inputs["inputs"].shape is None
    assert metadata.signatures["multi"].outputs["greeting_bytes"].dtype == "string"


def test_get_model_status(client, fake):
    fake.versions[3] = "LOADING"
    status = client.get_model_status("half_plus_two")
    assert isinstance(status, ModelStatus)
    assert [(v.version, v.state) for v in status.versions] == [(3, "LOADING"), (2, "AVAILABLE"), (1, "AVAILABLE")]
    assert status.available_versions == (2, 1)
    assert client.get_model_status("half_plus_two", version=1).versions[0].version == 1
    # The server ignores labels in status requests; the client resolves the label first.
    assert [v.version for v in client.get_model_status("half_plus_two", version_label="stable").versions] == [1]


@pytest.mark.parametrize(
    "call, error, code",
    [
        (lambda c: c.predict("nope", {"x": [1.0]}), ModelNotFoundError, "NOT_FOUND"),
        (lambda c: c.predict("half_plus_two", {"x": [1.0]}, version=9), ModelNotFoundError, "NOT_FOUND"),
        (lambda c: c.predict("half_plus_two", {"x": [1.0]}, version_label="gone"), VersionLabelNotFoundError, "INVALID_ARGUMENT"),
        (lambda c: c.predict("half_plus_two", {"wrong": [1.0]}), InvalidInputError, "INVALID_ARGUMENT"),
        (lambda c: c.predict("half_plus_two", {"x": [1.0]}, signature_name="nope"), InvalidInputError, "INVALID_ARGUMENT"),
        (lambda c: c.get_model_status("nope"), ModelNotFoundError, "NOT_FOUND"),
        (lambda c: c.get_model_status("half_plus_two", version=7), ModelNotFoundError, "NOT_FOUND"),
        (lambda c: c.get_model_metadata("nope"), ModelNotFoundError, "NOT_FOUND"),
        (lambda c: c.classify("nope", [{"x": 1.0}]), ModelNotFoundError, "NOT_FOUND"),
    ],
)
def test_errors_have_the_same_class_code_and_message_over_both_transports(client, call, error, code):
    with pytest.raises(error) as info:
        call(client)
    assert isinstance(info.value, ServingError)
    assert info.value.code == code
    assert info.value.message  # the server's text, not a transport's
    assert "StatusCode" not in info.value.message and "HTTP" not in info.value.message


def test_server_message_is_kept(client):
    with pytest.raises(ModelNotFoundError) as info:
        client.predict("nope", {"x": [1.0]})
    assert info.value.message == "Servable not found for request: Latest(nope)"
    assert str(info.value) == "NOT_FOUND: Servable not found for request: Latest(nope)"


def test_unavailable_is_retried_for_status_by_default(client, fake):
    fake.unavailable_calls = 2
    assert client.get_model_status("half_plus_two").available_versions == (2, 1)
    assert fake.calls == 3


def test_unavailable_is_not_retried_for_predict_by_default(client, fake):
    fake.unavailable_calls = 1
    with pytest.raises(ServerUnavailableError) as info:
        client.predict("half_plus_two", {"x": [1.0]})
    assert isinstance(info.value, ConnectionError)
    assert info.value.code == "UNAVAILABLE"
    assert fake.calls == 1


def test_predict_retries_when_opted_in(make_client, fake):
    from tfstack.client import RetryPolicy

    client = make_client(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, retry_inference=True))
    fake.unavailable_calls = 2
    np.testing.assert_allclose(client.predict("half_plus_two", {"x": [2.0]})["y"], [4.0])


def test_retries_give_up_with_a_clear_error(client, fake):
    fake.unavailable_calls = 10
    with pytest.raises(ServerUnavailableError, match="gave up after 3 attempts"):
        client.get_model_status("half_plus_two")


def test_wait_until_available_returns_the_version(client, fake):
    fake.unavailable_calls = 2
    assert client.wait_until_available("half_plus_two", timeout=5) == 2
    assert client.wait_until_available("half_plus_two", version=1, timeout=5) == 1
    assert client.wait_until_available("half_plus_two", version_label="stable", timeout=5) == 1


def test_wait_until_available_times_out_with_what_it_saw(client, fake):
    fake.versions[3] = "LOADING"
    with pytest.raises(RequestTimeoutError, match="version 3 is LOADING") as info:
        client.wait_until_available("half_plus_two", version=3, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    assert info.value.code == "DEADLINE_EXCEEDED"


async def test_async_client_has_the_same_methods(aclient):
    outputs = await aclient.predict("half_plus_two", {"x": [2.0]}, version=1)
    np.testing.assert_allclose(outputs["y"], [3.0])
    assert (await aclient.get_model_status("half_plus_two")).available_versions == (2, 1)
    assert (await aclient.get_model_metadata("half_plus_two")).version == 2
    assert (await aclient.classify("half_plus_two", [{"x": 2.0}], signature_name="classify_x_to_y", version=1)).classifications[0].scores == (3.0,)
    assert (await aclient.regress("half_plus_two", [{"x": 2.0}], signature_name="regress_x_to_y", version=1)).values == (3.0,)
    assert await aclient.wait_until_available("half_plus_two", version_label="canary", timeout=5) == 2
    with pytest.raises(ModelNotFoundError):
        await aclient.predict("nope", {"x": [1.0]})


async def test_async_client_retries(aclient, fake):
    fake.unavailable_calls = 2
    assert (await aclient.get_model_status("half_plus_two")).available_versions == (2, 1)


def test_sync_client_is_thread_safe(client):
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> float:
        return float(client.predict("half_plus_two", {"x": [float(i)]}, version=1)["y"][0])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(40)))
    assert results == [0.5 * i + 2 for i in range(40)]


def test_grpc_deadline_is_a_timeout_error(grpc_port, fake):
    from tfstack.client import ServingClient

    fake.delay = 1.0
    with ServingClient.grpc(f"127.0.0.1:{grpc_port}") as client:
        with pytest.raises(RequestTimeoutError) as info:
            client.predict("half_plus_two", {"x": [1.0]}, timeout=0.2)
    assert info.value.code == "DEADLINE_EXCEEDED" and info.value.grpc_code == "DEADLINE_EXCEEDED"


def test_binary_inputs_keep_trailing_nul_bytes(client):
    outputs = client.predict("half_plus_two", {"x": [1.0], "name": [b"a\x00\x00"]}, signature_name="multi")
    assert outputs["greeting_bytes"].tolist() == [b"hi a\x00\x00"]


async def test_async_client_runs_calls_concurrently(aclient):
    import asyncio

    results = await asyncio.gather(*(aclient.predict("half_plus_two", {"x": [float(i)]}, version=1) for i in range(20)))
    assert [float(r["y"][0]) for r in results] == [0.5 * i + 2 for i in range(20)]
