"""`tfstack predict` / `tfstack status` against the in-process fake gRPC server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfstack.client.cli import predict, read_inputs, status


@pytest.fixture
def target(grpc_port) -> str:
    return f"127.0.0.1:{grpc_port}"


def _run(command, args):
    return CliRunner().invoke(command, args, catch_exceptions=False)


@pytest.mark.parametrize(
    "document",
    [
        {"signature_name": "serving_default", "inputs": {"x": [1.0, 2.0]}},
        {"inputs": [1.0, 2.0]},
        {"instances": [1.0, 2.0]},
        {"instances": [{"x": 1.0}, {"x": 2.0}]},
        {"x": [1.0, 2.0]},
    ],
)
def test_predict_reads_every_json_shape(tmp_path, target, document):
    path = tmp_path / "body.json"
    path.write_text(json.dumps(document))
    result = _run(predict, ["half_plus_two", "--grpc", target, "--version", "1", "--input", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"outputs": {"y": [2.5, 3.0]}}


def test_predict_npy_and_table_output(tmp_path, target):
    path = tmp_path / "x.npy"
    np.save(path, np.array([[2.0]], dtype=np.float32))
    result = _run(predict, ["half_plus_two", "--grpc", target, "--label", "stable", "--input", str(path)])
    assert result.exit_code == 0, result.output
    assert "y" in result.output and "float32" in result.output and "[1, 1]" in result.output and "3." in result.output


def test_predict_reports_server_errors_in_one_line(tmp_path, target):
    path = tmp_path / "x.json"
    path.write_text('{"x": [1.0]}')
    result = _run(predict, ["nope", "--grpc", target, "--input", str(path)])
    assert result.exit_code == 1
    assert "NOT_FOUND: Servable not found for request: Latest(nope)" in result.output
    assert "Traceback" not in result.output


def test_predict_usage_errors(tmp_path, target):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    assert "Pass exactly one of --rest URL or --grpc TARGET" in _run(predict, ["m", "--input", str(path)]).output
    both = _run(predict, ["m", "--grpc", target, "--version", "1", "--label", "a", "--input", str(path)])
    assert both.exit_code == 2 and "not both" in both.output
    bad = _run(predict, ["m", "--grpc", target, "--input", str(path)])
    assert bad.exit_code == 2 and "Received a JSON list" in bad.output


def test_status_table_json_and_wait(target):
    result = _run(status, ["half_plus_two", "--grpc", target, "--json"])
    assert result.exit_code == 0
    assert [v["version"] for v in json.loads(result.output)["versions"]] == [2, 1]
    table = _run(status, ["half_plus_two", "--grpc", target, "--wait", "5"])
    assert table.exit_code == 0 and "AVAILABLE" in table.output
    missing = _run(status, ["nope", "--grpc", target])
    assert missing.exit_code == 1 and "Could not find any versions of model nope" in missing.output


def test_status_exits_1_when_nothing_is_available(target, fake):
    fake.versions = {3: "LOADING"}
    result = _run(status, ["half_plus_two", "--grpc", target])
    assert result.exit_code == 1 and "LOADING" in result.output


def test_read_inputs_b64_and_npz(tmp_path):
    path = tmp_path / "b.json"
    path.write_text('{"inputs": {"img": [{"b64": "/w=="}]}}')
    inputs, _ = read_inputs(path)
    assert inputs["img"].tolist() == [b"\xff"]
    npz = tmp_path / "a.npz"
    np.savez(npz, x=np.ones(2), n=np.arange(3))
    inputs, _ = read_inputs(npz)
    assert sorted(inputs) == ["n", "x"]
