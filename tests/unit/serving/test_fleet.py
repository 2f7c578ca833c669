"""Fleets: where the replicas are (lists, servers files, DNS names) and a rollout across fake replicas.

The fake replicas are tests.unit.serving.test_rollout.FakeServer, which enforces TF Serving's
reload rule (labels only on AVAILABLE versions), so a step order that passes here works on
every real replica too.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfstack.serving._errors import RolloutError
from tfstack.serving.rollout import (
    Fleet,
    ModelState,
    ReplicaAddress,
    ReplicaError,
    Rollout,
    RolloutPolicy,
    read_servers_file,
    resolve_replicas,
)
from tfstack.serving.rollout._fleet import resolve_name
from tfstack.serving.rollout.cli import rollout as rollout_cli
from tests.unit.serving.test_rollout import MODEL, FakeServer, make_version


def fake_dns(table):
    """A getaddrinfo stand-in: host -> addresses (as a headless Service's DNS answers)."""

    def resolve(host, port, type=0):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]
        ]

    return resolve


# ================================================================================ addresses


def test_repeated_grpc_and_rest_pair_in_order():
    replicas = resolve_replicas(["127.0.0.1:8500", "127.0.0.1:9500"], ["127.0.0.1:8501", "http://127.0.0.1:9501/"])
    assert replicas == [
        ReplicaAddress(grpc_target="127.0.0.1:8500", rest_url="http://127.0.0.1:8501"),
        ReplicaAddress(grpc_target="127.0.0.1:9500", rest_url="http://127.0.0.1:9501"),
    ]
    assert resolve_replicas([], ["http://127.0.0.1:8501"]) == [ReplicaAddress(rest_url="http://127.0.0.1:8501")]


def test_unpaired_lists_and_bad_addresses_say_what_was_received():
    with pytest.raises(ValueError, match=r"one gRPC and one REST address in the same order.*Received: 2 gRPC .* and 1 REST"):
        resolve_replicas(["127.0.0.1:8500", "127.0.0.1:9500"], ["127.0.0.1:8501"])
    with pytest.raises(ValueError, match=r"gRPC address must be host:port or dns:///NAME:PORT \(no http:// scheme\). "
                                         r"Received: 'http://h:1'"):
        resolve_replicas(["http://h:1"])
    with pytest.raises(ValueError, match=r"gRPC address must be host:port. Received: 'h:port'"):
        resolve_replicas(["h:port"])
    with pytest.raises(ValueError, match=r"Replica 127.0.0.1:8500 is listed twice"):
        resolve_replicas(["127.0.0.1:8500", "127.0.0.1:8500"])
    with pytest.raises(ValueError, match=r"a DNS server in the name .* is not supported"):
        resolve_replicas(["dns://8.8.8.8/svc:8500"])


def test_a_headless_service_name_stands_for_each_pod_one_address_family():
    dns = fake_dns({"tfserving.models.svc": ["127.0.0.3", "127.0.0.1", "::3", "::1", "127.0.0.2", "127.0.0.1"]})
    replicas = resolve_replicas(["dns:///tfserving.models.svc:8500"], ["dns:///tfserving.models.svc:8501"], resolve=dns)
    assert replicas == [
        ReplicaAddress(grpc_target=f"127.0.0.{i}:8500", rest_url=f"http://127.0.0.{i}:8501") for i in (1, 2, 3)
    ]
    assert resolve_name("v6only", 8500, resolve=fake_dns({"v6only": ["::2", "::1"]})) == ["[::1]", "[::2]"]
    with pytest.raises(ValueError, match=r"gRPC address 'dns:///nowhere:8500': Cannot resolve 'nowhere'"):
        resolve_replicas(["dns:///nowhere:8500"], resolve=dns)


def test_dns_names_that_resolve_to_different_pods_are_not_paired():
    dns = fake_dns({"a": ["127.0.0.1", "127.0.0.2"], "b": ["127.0.0.1", "127.0.0.5"]})
    with pytest.raises(ValueError, match=r"resolve to different hosts \(127.0.0.2:8500 vs http://127.0.0.5:8501\)"):
        resolve_replicas(["dns:///a:8500"], ["dns:///b:8501"], resolve=dns)


def test_localhost_resolves_through_the_system_resolver():
    assert resolve_replicas(["dns:///localhost:8500"]) == [ReplicaAddress(grpc_target="127.0.0.1:8500")]


def test_servers_file_lists_one_replica_per_line(tmp_path):
    path = tmp_path / "servers.txt"
    path.write_text(
        "# gRPC target, REST URL\n"
        "127.0.0.1:8500 http://127.0.0.1:8501   # first\n"
        "\n"
        "127.0.0.2:8500\n"
        "- http://127.0.0.3:8501\n"
        "dns:///pods:8500 dns:///pods:8501\n"
    )
    replicas = read_servers_file(path, resolve=fake_dns({"pods": ["127.0.0.9"]}))
    assert replicas == [
        ReplicaAddress(grpc_target="127.0.0.1:8500", rest_url="http://127.0.0.1:8501"),
        ReplicaAddress(grpc_target="127.0.0.2:8500"),
        ReplicaAddress(rest_url="http://127.0.0.3:8501"),
        ReplicaAddress(grpc_target="127.0.0.9:8500", rest_url="http://127.0.0.9:8501"),
    ]
    path.write_text("127.0.0.1:8500 http://127.0.0.1:8501 extra\n")
    with pytest.raises(ValueError, match=r"servers.txt line 1: expected `GRPC_TARGET \[REST_URL\]`"):
        read_servers_file(path)
    path.write_text("# nobody\n")
    with pytest.raises(ValueError, match=r"lists no replica"):
        read_servers_file(path)


# ================================================================================ fleet


class NamedFake(FakeServer):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.down = False
        self.reload_attempts = 0

    def reload(self, config) -> None:
        self.reload_attempts += 1
        if self.down:
            raise RolloutError(f"The server at {self.name} rejected the config reload: UNAVAILABLE: connection refused")
        super().reload(config)


@pytest.fixture
def repo(tmp_path):
    base = tmp_path / "models"
    for version, accuracy in ((1, 0.90), (2, 0.92)):
        make_version(base, version, accuracy=accuracy)
    return base


def fleet_rollout(tmp_path, repo, replicas):
    fleet = Fleet(replicas)
    runner = Rollout(tmp_path / "models.config", repo, server=fleet, policy=RolloutPolicy(skip_gates=("infra",)))
    runner.init(MODEL, 1)
    return runner


def test_a_fleet_needs_uniquely_named_replicas():
    replicas = [NamedFake(f"r{i}") for i in range(3)]
    fleet = Fleet(replicas)
    assert fleet.names == ("r0", "r1", "r2")
    with pytest.raises(ValueError, match=r"Replica names must be unique. Received twice: \['r0'\]"):
        Fleet([NamedFake("r0"), NamedFake("r0")])
    with pytest.raises(ValueError, match="at least one replica"):
        Fleet([])


def test_a_fleet_canary_and_promote_move_every_replica(tmp_path, repo):
    replicas = [NamedFake(f"r{i}") for i in range(3)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    state = runner.canary(MODEL, 2)
    assert (state.stable, state.canary) == (1, 2)
    for replica in replicas:
        assert replica.labels == {"stable": 1, "canary": 2}
        # load (union, labels unchanged) -> labels -> unload, on every replica
        assert replica.reloads[-3:] == [((1, 2), {"stable": 1, "canary": 1}), ((1, 2), {"stable": 1, "canary": 2}),
                                        ((1, 2), {"stable": 1, "canary": 2})]
    runner.promote(MODEL, grace_seconds=0)
    assert all(r.labels == {"stable": 2, "canary": 2} and r.states[1] == "END" for r in replicas)
    assert runner.server.version_states(MODEL) == {1: "END", 2: "AVAILABLE"}


def test_a_replica_that_fails_stops_the_step_and_the_others_go_back(tmp_path, repo):
    replicas = [NamedFake(f"r{i}") for i in range(3)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    config_before = (tmp_path / "models.config").read_bytes()
    replicas[2].broken.add(2)  # version 2 never loads there

    with pytest.raises(ReplicaError) as failed:
        runner.canary(MODEL, 2)

    message = str(failed.value)
    assert message.startswith("Replica r2 (3 of 3) failed to load version 2 of 'iris': Version 2 of model 'iris' "
                              "did not become AVAILABLE: failed to load")
    assert message.endswith("The rollout stopped: the previous state (stable=1, canary=none) is restored on r0, r1.")
    assert failed.value.replicas == ("r2",)
    assert (tmp_path / "models.config").read_bytes() == config_before
    assert runner.state(MODEL) == ModelState(stable=1)
    for replica in replicas[:2]:
        assert replica.labels == {"stable": 1, "canary": 1}
        assert replica.states[2] == "END"
    # The failed replica was not waited on during the restore, but got the restored config.
    assert replicas[2].reloads[-1] == ((1,), {"stable": 1, "canary": 1})
    # The next step is strict on every replica again.
    replicas[2].broken.clear()
    replicas[2].states.pop(2)
    assert runner.canary(MODEL, 2).canary == 2


def test_an_unreachable_replica_is_named_and_the_others_restored(tmp_path, repo):
    replicas = [NamedFake(f"r{i}") for i in range(3)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    runner.canary(MODEL, 2)
    replicas[1].down = True

    with pytest.raises(ReplicaError, match=r"^Replica r1 \(2 of 3\) failed to reload the config: The server at r1 "
                                           r"rejected the config reload: UNAVAILABLE"):
        runner.promote(MODEL)

    assert runner.state(MODEL) == ModelState(stable=1, canary=2)
    for replica in (replicas[0], replicas[2]):
        assert replica.labels == {"stable": 1, "canary": 2}
        assert replica.states == {1: "AVAILABLE", 2: "AVAILABLE"}


def test_two_failed_replicas_are_listed(tmp_path, repo):
    replicas = [NamedFake(f"r{i}") for i in range(3)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    replicas[0].broken.add(2)
    replicas[2].broken.add(2)
    with pytest.raises(ReplicaError, match=r"^2 of 3 replicas failed to load version 2 of 'iris':\n  - r0: .*\n  - r2: "):
        runner.canary(MODEL, 2)
    assert replicas[1].labels == {"stable": 1, "canary": 1}


def test_status_has_one_line_per_replica_and_says_which_differ(tmp_path, repo):
    class Reporting(NamedFake):
        def replica_status(self, model_name, labels):
            from tfstack.serving.rollout import ReplicaStatus

            if self.down:
                return [ReplicaStatus(name=self.name, error="UNAVAILABLE: connection refused")]
            return [ReplicaStatus(name=self.name, states=dict(self.states), labels={k: self.labels.get(k) for k in labels})]

    replicas = [Reporting(f"r{i}") for i in range(3)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    runner.canary(MODEL, 2)
    replicas[1].labels = {"stable": 1}
    replicas[2].down = True
    status = runner.status(MODEL)
    rows = {r.name: r for r in status.replicas}
    assert rows["r0"].differences == ()
    assert rows["r1"].differences == ("canary -> nothing (config: 2)",)
    assert rows["r2"].differences == ("unreachable",)
    # The version table still shows what the replicas that answer agree on.
    replicas[2].version_states = lambda model_name: (_ for _ in ()).throw(RolloutError("UNAVAILABLE"))
    by_version = {row.version: row.server_state for row in runner.status(MODEL).versions}
    assert by_version == {1: "AVAILABLE 2/3, unreachable 1/3", 2: "AVAILABLE 2/3, unreachable 1/3"}


def test_the_command_line_reports_unpaired_replicas_in_one_line(tmp_path, repo):
    result = CliRunner().invoke(rollout_cli, [
        "--config", str(tmp_path / "models.config"), "--base-path", str(repo),
        "--grpc", "127.0.0.1:8500", "--grpc", "127.0.0.1:9500", "--rest", "127.0.0.1:8501", "status", MODEL,
    ])
    assert result.exit_code == 1
    assert "Error: Each replica needs one gRPC and one REST address in the same order" in result.output
    assert "Traceback" not in result.output


def test_rollout_steps_never_import_tensorflow(tmp_path, repo):
    """Issue 18 item 7: the config and the reload request are the client's own protos."""
    import json
    import subprocess
    import sys

    from tests.support.server import free_port

    script = f"""
import json, sys
from tfstack.serving._errors import RolloutError
from tfstack.serving.rollout import Fleet, LiveServer, Rollout
import tfstack.serving.rollout.cli
offline = Rollout({str(tmp_path / "models.config")!r}, {str(repo)!r})
offline.init({MODEL!r}, 1)
config = offline.config.read()
assert config.model_config_list.config[0].model_version_policy.specific.versions == [1]
fleet = Fleet([LiveServer(grpc_target="127.0.0.1:{free_port()}", reload_timeout=5)])
try:
    fleet.reload(config)
except RolloutError as exc:
    error = str(exc)
print(json.dumps({{"error": error, "modules": sorted({{m.split(".")[0] for m in sys.modules}}
                  & {{"tensorflow", "tensorflow_serving", "keras"}})}}))
"""
    root = Path(__file__).resolve().parents[3]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["modules"] == []
    assert "did not answer the config reload: UNAVAILABLE" in report["error"]


def test_watch_probes_every_replica_and_judges_their_sum():
    """One bad replica out of three still shows in the fleet's canary error rate."""
    import numpy as np

    from tfstack.client import InternalServerError
    from tfstack.serving.rollout import ProbeMetrics, WatchThresholds, judge_canary

    class Replica:
        def __init__(self, broken_canary: bool) -> None:
            self.broken_canary, self.calls = broken_canary, []

        def predict(self, model_name, inputs, *, version_label, signature_name):
            self.calls.append(version_label)
            if self.broken_canary and version_label == "canary":
                raise InternalServerError("boom", code="INTERNAL")
            return {"y": np.zeros(1)}

    replicas = [Replica(False), Replica(False), Replica(True)]
    window = ProbeMetrics(replicas, MODEL, {"x": np.zeros(1)}, requests=10).snapshot()
    assert all(sorted(set(r.calls)) == ["canary", "stable"] and len(r.calls) == 20 for r in replicas)
    assert window["stable"].requests == window["canary"].requests == 30
    assert window["canary"].errors == 10 and window["stable"].errors == 0
    assert "canary error rate 33.33% (10/30)" in judge_canary(window["stable"], window["canary"], WatchThresholds())
    with pytest.raises(ValueError, match=r"a non-empty sequence of them. Received: \[\]"):
        ProbeMetrics([], MODEL, {})


def test_when_no_replica_answers_the_message_says_only_the_file_was_restored(tmp_path, repo):
    replicas = [NamedFake(f"r{i}") for i in range(2)]
    runner = fleet_rollout(tmp_path, repo, replicas)
    config_before = (tmp_path / "models.config").read_bytes()
    for replica in replicas:
        replica.down = True
    with pytest.raises(ReplicaError, match=r"(?s)^2 of 2 replicas failed to reload the config:.*The rollout stopped: "
                                           r"the previous state \(stable=1, canary=none\) is back in the config file; "
                                           r"no replica answered"):
        runner.canary(MODEL, 2)
    assert (tmp_path / "models.config").read_bytes() == config_before
    assert runner.state(MODEL) == ModelState(stable=1)


@pytest.fixture
def grpc_server():
    """An in-process gRPC server on 127.0.0.1; register handlers before calling it."""
    from concurrent import futures

    import grpc

    servers = []

    def start(*handlers):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=handlers)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


def test_the_reload_sends_the_whole_config_and_names_the_servers_error_code(tmp_path, repo, grpc_server):
    import grpc

    from tfstack.client._proto import tfstack_serving_pb2 as wire
    from tfstack.serving.rollout import LiveServer

    received = []

    def handle(request, context):
        received.append(request)
        response = wire.ReloadConfigResponse()
        response.status.error_code = wire.FAILED_PRECONDITION
        response.status.error_message = "Request to assign label to version 2 of model iris, which is not available"
        return response

    handler = grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
        "HandleReloadConfigRequest": grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=wire.ReloadConfigRequest.FromString,
            response_serializer=wire.ReloadConfigResponse.SerializeToString),
    })
    target = grpc_server(handler)
    offline = Rollout(tmp_path / "models.config", repo)
    offline.init(MODEL, 1)
    live = LiveServer(grpc_target=target)
    with pytest.raises(RolloutError, match=rf"^The server at {target} rejected the config reload: FAILED_PRECONDITION: "
                                           "Request to assign label to version 2"):
        live.reload(offline.config.read())
    live.close()
    (entry,) = received[0].config.model_config_list.config
    assert (entry.name, list(entry.model_version_policy.specific.versions)) == (MODEL, [1])


def test_a_server_without_the_reload_rpc_gets_a_hint(tmp_path, repo, grpc_server):
    from tfstack.serving.rollout import LiveServer

    target = grpc_server()  # no handlers: every method is UNIMPLEMENTED
    live = LiveServer(grpc_target=target)
    with pytest.raises(RolloutError, match=r"rejected the config reload: UNIMPLEMENTED: .*use --no-reload-rpc"):
        live.reload(Rollout(tmp_path / "models.config", repo).config.read())
    live.close()
