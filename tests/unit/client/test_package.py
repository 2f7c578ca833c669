"""The package's public surface and its import cost (a client-only install has no TensorFlow)."""

from __future__ import annotations

import json
import types
import subprocess
import sys

from tfstack import client


def test_all_lists_exactly_the_public_names():
    # "@py_builtins"/"@pytest_ar" are injected by pytest's assertion rewriting: tfstack registers a
    # pytest plugin, so pytest rewrites every module of the distribution, client included.
    # Public submodules (`tfstack.client.wire`) appear as attributes once imported; they are not names.
    public = {name for name in dir(client) if not name.startswith(("_", "@")) and not isinstance(getattr(client, name), types.ModuleType)}
    assert set(client.__all__) == public
    for name in client.__all__:
        value = getattr(client, name)
        if isinstance(value, str):  # constants: the version labels
            continue
        assert value.__module__.startswith("tfstack.client._")
    assert (client.STABLE_LABEL, client.CANARY_LABEL) == ("stable", "canary")


def test_error_tree():
    assert issubclass(client.ServerUnavailableError, ConnectionError)
    assert issubclass(client.RequestTimeoutError, TimeoutError)
    assert issubclass(client.VersionLabelNotFoundError, client.ModelNotFoundError)
    for name in ("ServerUnavailableError", "RequestTimeoutError", "ModelNotFoundError", "InvalidInputError",
                 "InternalServerError", "BadResponseError"):
        assert issubclass(getattr(client, name), client.ServingError)


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_client_never_imports_tensorflow_nor_transports():
    loaded = _fresh(
        "import sys, json; from tfstack import client; "
        "print(json.dumps(sorted(m for m in ('tensorflow', 'tensorflow_serving', 'keras', 'grpc', 'httpx', "
        "'google.protobuf') if m in sys.modules)))"
    )
    assert loaded == []


def test_using_both_transports_still_never_imports_tensorflow():
    loaded = _fresh(
        "import sys, json; from tfstack import client; "
        "c = client.ServingClient.grpc('127.0.0.1:1'); c.close(); "
        "r = client.ServingClient.rest('http://127.0.0.1:1'); r.close(); "
        "import tfstack.client.cli; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras'))))"
    )
    assert loaded == []


def test_our_protos_coexist_with_tensorflows():
    loaded = _fresh(
        "import json; from tfstack.client._proto import tfstack_serving_pb2 as ours; "
        "from tensorflow_serving.apis import predict_pb2; "
        "print(json.dumps([ours.PredictRequest.DESCRIPTOR.full_name, predict_pb2.PredictRequest.DESCRIPTOR.full_name]))"
    )
    assert loaded == ["tfstack.serving_wire.PredictRequest", "tensorflow.serving.PredictRequest"]


def test_a_rest_only_client_never_loads_grpc_or_protobuf():
    loaded = _fresh(
        "import sys, json; from tfstack import client; client.ServingClient.rest('http://127.0.0.1:1').close(); "
        "print(json.dumps(sorted(m for m in ('grpc', 'google.protobuf') if m in sys.modules)))"
    )
    assert loaded == []
