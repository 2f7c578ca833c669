"""Integration fixtures: a real `tfstack serve` subprocess on 127.0.0.1 (REST and client tests reuse them).

Fixtures:
  half_plus_two_base (session): model base path `<tmp>/models/half_plus_two` holding version
      directory `00000123` (leading zeros, as TF Serving's testdata) of half_plus_two
      (tests/support/models.py: y = 0.5x + 2; classify_x_to_y, regress_x_to_y, ... signatures).
  half_plus_two_tf1_base (session): `<tmp>/models/half_plus_two_tf1` with version `123` of the
      TF1-graph twin (tests/support/models.py build_half_plus_two_tf1: tensor names x:0/y:0,
      shapes [-1, 1], one shared tf_example:0 input, classify/regress method names), i.e.
      TF Serving's `saved_model_half_plus_two_cpu` shape.
  server (session): `tests.support.server.RunningServer` serving both (a --model_config_file)
      as models "half_plus_two" and "half_plus_two_tf1", gRPC always, REST when tfstack.serving.server.rest._app
      exists; `server.grpc_target`, `server.rest_url`.
  grpc_channel (session): a `grpc.Channel` to that server with unlimited message sizes.

Start your own server (other flags, other models) with `tests.support.server.start_server`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.models import build_half_plus, build_half_plus_two_tf1
from tests.support.server import start_server

MODEL_NAME = "half_plus_two"
TF1_MODEL_NAME = "half_plus_two_tf1"
VERSION = 123


@pytest.fixture(scope="session")
def half_plus_two_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("models") / MODEL_NAME
    build_half_plus(base / "00000123")
    return base


@pytest.fixture(scope="session")
def half_plus_two_tf1_base(half_plus_two_base: Path) -> Path:
    base = half_plus_two_base.parent / TF1_MODEL_NAME
    build_half_plus_two_tf1(base / "123")
    return base


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, half_plus_two_base: Path, half_plus_two_tf1_base: Path):
    workdir = tmp_path_factory.mktemp("server")
    config = workdir / "models.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: '{MODEL_NAME}' base_path: '{half_plus_two_base}' model_platform: 'tensorflow' }}\n"
        f"  config {{ name: '{TF1_MODEL_NAME}' base_path: '{half_plus_two_tf1_base}' model_platform: 'tensorflow' }}\n"
        "}\n"
    )
    with start_server(workdir, f"--model_config_file={config}", model_base_path=None) as running:
        yield running


@pytest.fixture(scope="session")
def grpc_channel(server):
    import grpc

    channel = grpc.insecure_channel(
        server.grpc_target,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    yield channel
    channel.close()
