"""Batching options through a real server: variable-length padding, large-batch splitting and
per-model parameters (`--enable_per_model_batching_parameters`, spec §6).

One server serves copies of half_plus_two (y = 0.5x + 2, any input shape), each version with its
own `batching_params.pbtxt`:
  * padded / strict: max_batch_size 2 and a 60 s batch timeout, so two concurrent requests always
    share one batch and nothing else does; `padded` has pad_variable_length_inputs.
  * split: large-batch splitting with max_execution_batch_size 4.
  * unbatched: no file, so with per-model parameters it is served without batching.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests.support.server import start_server

WAIT = "batch_timeout_micros { value: 60000000 }\n"
MODELS = {
    "padded": "max_batch_size { value: 2 }\n" + WAIT + "pad_variable_length_inputs: true\n",
    "strict": "max_batch_size { value: 2 }\n" + WAIT,
    "split": "max_batch_size { value: 16 }\nenable_large_batch_splitting { value: true }\n"
             "max_execution_batch_size { value: 4 }\nallowed_batch_sizes: 2\nallowed_batch_sizes: 4\n",
    "unbatched": None,
}


@pytest.fixture(scope="module")
def models(tmp_path_factory, half_plus_two_base) -> Path:
    root = tmp_path_factory.mktemp("per_model")
    for name, params in MODELS.items():
        version = root / name / "1"
        shutil.copytree(half_plus_two_base / "00000123", version)
        if params is not None:
            (version / "batching_params.pbtxt").write_text(params)
    return root


@pytest.fixture(scope="module")
def per_model(tmp_path_factory, models):
    workdir = tmp_path_factory.mktemp("per_model_server")
    config = workdir / "models.config"
    entries = "".join(f"  config {{ name: '{n}' base_path: '{models / n}' model_platform: 'tensorflow' }}\n" for n in MODELS)
    config.write_text("model_config_list {\n" + entries + "}\n")
    # The global file only sizes the shared thread pool; its max_batch_size must not apply.
    global_params = workdir / "batching.config"
    global_params.write_text("max_batch_size { value: 1 }\nnum_batch_threads { value: 2 }\n")
    with start_server(
        workdir,
        f"--model_config_file={config}",
        "--enable_batching",
        f"--batching_parameters_file={global_params}",
        "--enable_per_model_batching_parameters",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=0",
        model_base_path=None,
        rest=True,
    ) as running:
        yield running


def _predict(server, model: str, instances) -> httpx.Response:
    body = json.dumps({"instances": instances})
    return httpx.post(f"{server.rest_url}/v1/models/{model}:predict", content=body, timeout=90)


def _together(server, model: str, first, second) -> tuple[httpx.Response, httpx.Response]:
    """Two concurrent requests; max_batch_size 2 closes their batch as soon as both are queued."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(_predict, server, model, first)
        b = pool.submit(_predict, server, model, second)
        return a.result(), b.result()


def test_variable_length_inputs_are_padded_with_each_requests_first_value(per_model):
    short, long = _together(per_model, "padded", [[2.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]])
    assert short.status_code == long.status_code == 200, (short.text, long.text)
    # TF Serving splits outputs along dim 0 only, so the short request sees the padded width:
    # its pad value was its own first element (2.0 -> 3.0).
    assert short.json() == {"predictions": [[3.0, 4.0, 3.0, 3.0]]}
    assert long.json() == {"predictions": [[2.5, 3.0, 3.5, 4.0]]}


def test_unequal_shapes_without_padding_fail_their_batch(per_model):
    first, second = _together(per_model, "strict", [[2.0, 4.0]], [[1.0, 2.0, 3.0]])
    # The name is the signature input's tensor name, as TF Serving's session sees it.
    expected = (
        "Tensors with name 'serving_default_x:0' from different tasks have different shapes and padding is turned off. "
        "Set pad_variable_length_inputs to true, or ensure that all tensors with the same name have equal "
        "dimensions starting with the first dim."
    )
    assert (first.status_code, second.status_code) == (400, 400)
    assert first.json() == second.json() == {"error": expected}
    # Equal shapes merge fine in the same queue afterwards.
    ok = _together(per_model, "strict", [[1.0, 1.0]], [[3.0, 3.0]])
    assert [r.json() for r in ok] == [{"predictions": [[2.5, 2.5]]}, {"predictions": [[3.5, 3.5]]}]


def test_a_large_request_is_split_and_answered_whole(per_model):
    rows = [float(i) for i in range(11)]
    response = _predict(per_model, "split", rows)
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0.5 * v + 2 for v in rows]}
    too_big = _predict(per_model, "split", [0.0] * 17)
    assert too_big.status_code == 400
    assert too_big.json() == {"error": "Task size 17 is larger than maximum input batch size 16"}


def test_a_version_without_a_file_is_not_batched(per_model):
    # Batching refuses scalars; the unbatched session runs them (global max_batch_size 1 is unused too).
    scalar = httpx.post(f"{per_model.rest_url}/v1/models/unbatched:predict", json={"inputs": {"x": 3.0}}, timeout=60)
    assert scalar.status_code == 200 and scalar.json() == {"outputs": 3.5}
    batched_scalar = httpx.post(f"{per_model.rest_url}/v1/models/split:predict", json={"inputs": {"x": 3.0}}, timeout=60)
    assert batched_scalar.json() == {"error": "Batching Run() input tensors must have at least one dimension"}


def test_a_bad_per_model_file_fails_only_that_versions_load(per_model, models):
    staging = models / "split" / ".incoming"
    shutil.copytree(models / "split" / "1", staging)
    (staging / "batching_params.pbtxt").write_text("max_batch_size: 3\n")  # a wrapper needs { value: }
    staging.rename(models / "split" / "2")
    per_model.wait_for_log("Loading servable version {name: split version: 2} failed", timeout=60)
    status = httpx.get(f"{per_model.rest_url}/v1/models/split", timeout=30).json()["model_version_status"]
    by_version = {s["version"]: s for s in status}
    assert by_version["2"]["state"] == "END"
    assert by_version["2"]["status"]["error_message"] == f"Invalid protobuf file: '{models / 'split' / '2' / 'batching_params.pbtxt'}'"
    assert by_version["1"]["state"] == "AVAILABLE"
    assert _predict(per_model, "split", [2.0]).json() == {"predictions": [3.0]}
