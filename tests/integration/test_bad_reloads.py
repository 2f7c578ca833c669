"""Bad changes arriving while a server runs (issue 5, Reliability): a clear error, and the previous
state keeps serving. Covers a corrupt new version, a config with a syntax error (by polling), and
a duplicate model, a missing base path and a label on an unloaded version (by the reload RPC)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from tfstack.client import ServingClient
from tests.support.models import build_half_plus
from tests.support.server import start_server

GOOD = "model_config_list {{ config {{ name: 'good' base_path: '{base}' model_platform: 'tensorflow' }} }}\n"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _reload(target: str, config_text: str, timeout: float = 60):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text, request.config)
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(target))
    return stub.HandleReloadConfigRequest(request, timeout=timeout)


def _serves_version_one(client: ServingClient) -> None:
    outputs = client.predict("good", {"x": np.array([2.0], np.float32)})
    np.testing.assert_allclose(outputs["y"], [3.0])
    assert client.get_model_status("good").available_versions == (1,)


@pytest.mark.timeout(600)
def test_bad_changes_leave_the_previous_state_serving(tmp_path: Path):
    base = tmp_path / "models" / "good"
    build_half_plus(base / "1")
    config = tmp_path / "models.config"
    config.write_text(GOOD.format(base=base))

    with start_server(
        tmp_path,
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=1",
        "--file_system_poll_wait_seconds=1",
        "--max_num_load_retries=0",
        model_base_path=None,
        rest=True,
    ) as server:
        client = ServingClient.grpc(server.grpc_target)
        _serves_version_one(client)

        # A corrupt version directory appears: its load fails, version 1 keeps serving.
        (base / "2").mkdir()
        (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
        deadline = time.monotonic() + 60
        while 2 not in {v.version for v in client.get_model_status("good").versions}:
            assert time.monotonic() < deadline, "version 2 never showed up in the status"
            time.sleep(0.1)
        server.wait_for_log("did not become available and is END")
        status = {v.version: v for v in client.get_model_status("good").versions}
        assert status[2].state == "END" and status[2].error_code != "OK" and status[2].error_message
        _serves_version_one(client)
        (base / "2" / "saved_model.pb").unlink()
        (base / "2").rmdir()

        # A config file with a syntax error, picked up by polling: logged, the old config stays.
        _write_atomically(config, "model_config_list { config { name: 'good' ")
        server.wait_for_log("Failed to read ModelServerConfig file")
        _serves_version_one(client)
        _write_atomically(config, GOOD.format(base=base))

        # A duplicate model by RPC: INVALID_ARGUMENT with TF Serving's text, nothing changes.
        duplicate = (
            "model_config_list {"
            f" config {{ name: 'good' base_path: '{base}' model_platform: 'tensorflow' }}"
            f" config {{ name: 'good' base_path: '{base}' model_platform: 'tensorflow' }} }}"
        )
        with pytest.raises(grpc.RpcError) as info:
            _reload(server.grpc_target, duplicate)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Illegal to list model good multiple times in config list" in info.value.details()
        _serves_version_one(client)

        # A label on a version that is not loaded: FAILED_PRECONDITION, nothing changes.
        labelled = (
            "model_config_list { config {"
            f" name: 'good' base_path: '{base}' model_platform: 'tensorflow'"
            " version_labels { key: 'stable' value: 9 } } }"
        )
        with pytest.raises(grpc.RpcError) as info:
            _reload(server.grpc_target, labelled)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not currently available for inference" in info.value.details()
        _serves_version_one(client)

        # A new model whose base path does not exist, while the config file is also polled: the
        # poller logs TF Serving's error, then restores the file's config (without the model),
        # which ends the RPC's wait here. (TF Serving's RPC would keep waiting until the deadline;
        # without a config poller both wait, see the next test.) "good" keeps serving.
        missing = (
            "model_config_list {"
            f" config {{ name: 'good' base_path: '{base}' model_platform: 'tensorflow' }}"
            f" config {{ name: 'ghost' base_path: '{tmp_path / 'nowhere'}' model_platform: 'tensorflow' }} }}"
        )
        assert _reload(server.grpc_target, missing, timeout=20).status.error_code == 0
        server.wait_for_log(f"Could not find base path {tmp_path / 'nowhere'} for servable ghost")
        _serves_version_one(client)
        client.close()


def test_reload_adding_a_model_without_a_base_path_waits_like_tf_serving(tmp_path: Path):
    # TF Serving's HandleReloadConfigRequest blocks until the new models are AVAILABLE or failed;
    # a model that has no base path yet never is, so the caller's deadline ends the call.
    base = tmp_path / "good"
    build_half_plus(base / "1", b=2.0)
    missing = (
        "model_config_list {"
        f" config {{ name: 'good' base_path: '{base}' model_platform: 'tensorflow' }}"
        f" config {{ name: 'ghost' base_path: '{tmp_path / 'later'}' model_platform: 'tensorflow' }} }}"
    )
    with start_server(tmp_path, model_name="good", model_base_path=base) as server:
        with pytest.raises(grpc.RpcError) as info:
            _reload(server.grpc_target, missing, timeout=3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        server.wait_for_log(f"Could not find base path {tmp_path / 'later'} for servable ghost")
        client = ServingClient.grpc(server.grpc_target)
        _serves_version_one(client)
        # Once the directory appears, the model loads: the reload took effect.
        build_half_plus(tmp_path / "staging" / "1", b=2.0)
        (tmp_path / "staging").rename(tmp_path / "later")
        assert client.wait_until_available("ghost", timeout=120) == 1
        client.close()
