"""`tfstack bench --replay`: logged PredictionLogs become the requests the load sends (no server, no timing)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from tfstack import export
from tfstack.serving import bench
from tfstack.serving.bench import Limits, Measurement, Scenario
from tfstack.serving.bench._load import _Cycle


def _logged(index: int, inputs: dict[str, np.ndarray], *, model: str = "m", signature: str = "",
            version: int | None = 3, kind: str = "predict_log") -> export.LoggedRequest:
    log = prediction_log_pb2.PredictionLog()
    log.log_metadata.model_spec.name = model
    if kind == "predict_log":
        request = log.predict_log.request
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for name, array in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    else:
        getattr(log, kind).request.model_spec.name = model
    return export.LoggedRequest(log=log, path=Path("/logs/m-00001.tfrecord"), index=index)


def test_a_logged_request_is_sent_as_itself_over_grpc_and_as_its_json_body_over_rest():
    pixels = np.arange(2 * 3, dtype=np.float32).reshape(2, 3) / 4
    words = np.array([b"caf\xc3\xa9", b"\xff\x00"], dtype=object)
    entry = _logged(0, {"pixels": pixels, "words": words}, signature="scores")

    (request,) = bench.build_replay([entry], model_name="m").requests

    assert request.batch_size == 2 and request.signature_name == "scores"
    sent = predict_pb2.PredictRequest.FromString(request.grpc_request)
    assert sent.model_spec.name == "m" and sent.model_spec.signature_name == "scores"
    # The version that answered may be gone: the replay goes to whatever the server serves now.
    assert not sent.model_spec.HasField("version")
    np.testing.assert_array_equal(tf.make_ndarray(sent.inputs["pixels"]), pixels)
    assert list(tf.make_ndarray(sent.inputs["words"])) == list(words)

    body = json.loads(request.rest_body)
    assert body["signature_name"] == "scores"
    np.testing.assert_array_equal(np.asarray(body["inputs"]["pixels"], np.float32), pixels)
    # Strings go as {"b64": ...}, as tfstack's client sends them (valid for any bytes).
    assert [base64.b64decode(v["b64"]) for v in body["inputs"]["words"]] == list(words)


def test_the_default_signature_is_left_implicit_and_a_scalar_input_is_one_example():
    (request,) = bench.build_replay([_logged(0, {"x": np.float32(2.5)})], model_name="m").requests
    assert json.loads(request.rest_body) == {"inputs": {"x": 2.5}}
    assert request.batch_size == 1 and request.signature_name == ""


def test_replay_keeps_log_order_and_counts_what_it_leaves_out():
    logs = [
        _logged(0, {"x": np.zeros((1, 2), np.float32)}),
        _logged(1, {"x": np.zeros((1, 2), np.float32)}, model="other"),
        _logged(2, {"x": np.ones((3, 2), np.float32)}),
        _logged(3, {}, kind="classify_log"),
        _logged(4, {"x": np.full((1, 2), 7, np.float32)}, version=None),
        _logged(5, {}, model="other", kind="regress_log"),
    ]
    replay = bench.build_replay(logs, model_name="m")
    sizes = [r.batch_size for r in replay.requests]
    firsts = [json.loads(r.rest_body)["inputs"]["x"][0][0] for r in replay.requests]
    assert sizes == [1, 3, 1] and firsts == [0, 1, 7]
    assert replay.other_models == {"other": 2}
    assert replay.other_kinds == {"classify_log": 1}
    summary = replay.summary()
    assert summary["requests"] == 3 and summary["examples"] == 5
    assert summary["batch_sizes"] == {"1": 2, "3": 1}
    assert summary["input_shapes"] == {"x": {"float32[1x2]": 2, "float32[3x2]": 1}}
    assert summary["signature_names"] == ["serving_default"]


def test_logs_without_a_predict_request_for_the_model_say_what_they_hold():
    logs = [_logged(0, {"x": np.zeros(1, np.float32)}, model="other"), _logged(1, {}, kind="regress_log")]
    with pytest.raises(ValueError, match=r"Predict requests for model 'm'\. Received: logs with 2 other records "
                                         r"\(1 for model 'other', 1 regress_log records of this model\)"):
        bench.build_replay(logs, model_name="m")


def test_inputs_with_different_batch_sizes_are_named_with_their_record():
    entry = _logged(7, {"a": np.zeros((2, 1), np.float32), "b": np.zeros((3, 1), np.float32)})
    with pytest.raises(ValueError, match=r"Record 7 of /logs/m-00001.tfrecord cannot be replayed: .*\{'a': 2, 'b': 3\}"):
        bench.build_replay([entry], model_name="m")


def test_each_worker_cycles_in_log_order_from_its_own_start_and_rewinds_after_warmup():
    requests = [bench.ReplayRequest(batch_size=i + 1, signature_name="", rest_body=b"", grpc_request=b"") for i in range(4)]
    cycle = _Cycle(requests, start=2)
    assert [cycle.take().batch_size for _ in range(6)] == [3, 4, 1, 2, 3, 4]
    cycle.rewind()
    assert cycle.take().batch_size == 3


def test_replay_scenarios_replace_the_batch_size_sweep_rest_may_run_on_wrk_grpc_on_python():
    scenarios = bench.plan_scenarios(protocols=("grpc", "rest"), concurrencies=(1, 4), batch_sizes=(1, 8), rate=50.0,
                                     baselines=False, replay=True)
    assert [(s.kind, s.protocol, s.concurrency if s.rate is None else s.rate) for s in scenarios] == [
        ("floor", "grpc", 1), ("replay", "grpc", 1), ("floor", "grpc", 4), ("replay", "grpc", 4),
        ("floor", "rest", 1), ("replay", "rest", 1), ("floor", "rest", 4), ("replay", "rest", 4),
        ("replay", "grpc", 50.0), ("replay", "rest", 50.0)]
    replayed = [s for s in scenarios if s.kind == "replay"]
    assert all(s.batch_size is None and s.generator == "python" for s in replayed)
    assert replayed[0].label == "replay grpc c=1 b=logged batching=off"
    on_wrk = bench.plan_scenarios(protocols=("grpc", "rest"), concurrencies=(2,), batch_sizes=(1,), baselines=False,
                                  floor=False, replay=True, generators={"rest": "wrk"})
    assert [(s.protocol, s.generator) for s in on_wrk] == [("grpc", "python"), ("rest", "wrk")]
    assert on_wrk[1].label == "replay rest (wrk) c=2 b=logged batching=off"
    with pytest.raises(ValueError, match="gRPC replay load comes from the Python generator .*h2load"):
        bench.plan_scenarios(protocols=("grpc",), concurrencies=(1,), batch_sizes=(1,), baselines=False, replay=True,
                             generators={"grpc": "h2load"})
    with pytest.raises(ValueError, match="baselines=True, replay=True"):
        bench.plan_scenarios(protocols=("rest",), concurrencies=(1,), batch_sizes=(1,), replay=True)


def test_a_replay_row_counts_the_examples_it_sent_and_has_no_single_batch_size():
    stats = bench.summarize([0.01] * 10, errors=0, elapsed_s=2.0)
    row = Measurement(scenario=Scenario(kind="replay", protocol="grpc", batch_size=None), stats=stats, processes=1,
                      load_avg_1m=0.0, examples=25).row()
    assert row["batch_size"] is None and row["throughput_rps"] == 5.0 and row["examples_per_s"] == 12.5
    assert "logged" in bench.markdown_table([Measurement(scenario=Scenario(kind="replay", protocol="grpc", batch_size=None),
                                                         stats=stats, processes=1, load_avg_1m=0.0, examples=25)])


def test_a_replay_scenario_without_requests_is_refused():
    with pytest.raises(ValueError, match=r"needs the logged requests"):
        bench.run_scenario(Scenario(kind="replay", protocol="rest", batch_size=None),
                           target=bench.Target(model_name="m", rest_url="http://127.0.0.1:1", grpc_target=None),
                           payloads={}, limits=Limits(duration=1.0), processes=1)


def _replay_options(tmp_path: Path, **overrides):
    options = {"load_generator": "c", "protocols": ("grpc", "rest"), "requests": None, "duration": 2.0, "rest": None,
               "grpc": None, "allow_remote": False, "model_base_path": tmp_path, "warmup": 1, "timeout": 5.0,
               "enable_batching": False, "batching_modes": None, "processes": 1, "concurrencies": (1,),
               "batch_sizes": (1,), "rate": None, "replay_logs": (str(tmp_path / "absent"),), "baselines": True,
               "model_name": "m", "explicit": set()}
    options.update(overrides)
    return options


def _tools_on_path(monkeypatch, directory: Path, *tools: str) -> None:
    directory.mkdir(exist_ok=True)
    for tool in tools:
        (directory / tool).write_text("#!/bin/sh\n")
        (directory / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(directory))


def test_replay_sends_rest_from_wrk_and_grpc_from_python_and_says_so(monkeypatch, tmp_path: Path):
    from tfstack.serving.bench.cli import _generators

    _tools_on_path(monkeypatch, tmp_path / "bin", "wrk", "h2load")
    for choice in ("auto", "c"):
        generators, notes = _generators(_replay_options(tmp_path, load_generator=choice))
        assert generators == {"grpc": "python", "rest": "wrk"}, choice
        text = " ".join(notes)
        assert "REST replay load from wrk" in text and "gRPC replay load from the Python generator: h2load" in text
    assert "applies to REST only" in " ".join(_generators(_replay_options(tmp_path))[1])
    assert _generators(_replay_options(tmp_path, load_generator="python")) == ({"grpc": "python", "rest": "python"}, [])
    generators, notes = _generators(_replay_options(tmp_path, load_generator="auto", requests=8, duration=None,
                                                    protocols=("rest",)))
    assert generators == {"rest": "python"} and "wrk runs for a --duration" in notes[0]


def test_replay_with_load_generator_c_is_refused_when_wrk_is_missing_or_with_requests(monkeypatch, tmp_path: Path):
    from tfstack.serving.bench.cli import _plan

    _tools_on_path(monkeypatch, tmp_path / "bin", "h2load")  # no wrk
    # Refused before any log is read (the log path does not exist).
    with pytest.raises(ValueError, match=r"--load-generator c --replay: wrk .* is not installed.*apt-get install wrk"):
        _plan(_replay_options(tmp_path))
    # gRPC alone needs no C tool: it falls back to Python, said in the notes.
    from tfstack.serving.bench.cli import _generators

    generators, notes = _generators(_replay_options(tmp_path, protocols=("grpc",)))
    assert generators == {"grpc": "python"} and "h2load sends one request file" in notes[0]
    # auto without wrk: Python, with the reason.
    generators, notes = _generators(_replay_options(tmp_path, load_generator="auto", protocols=("rest",)))
    assert generators == {"rest": "python"} and "apt-get install wrk" in notes[0]
    _tools_on_path(monkeypatch, tmp_path / "bin", "wrk")
    with pytest.raises(ValueError, match=r"wrk runs for a --duration.*Received: --load-generator c --replay --requests 8"):
        _plan(_replay_options(tmp_path, requests=8, duration=None))
