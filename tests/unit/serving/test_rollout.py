"""Rollout steps against a fake server that enforces TF Serving's reload rules (no TensorFlow).

The fake loads exactly the versions a `specific` policy lists and rejects a reload whose labels
point at a version that is not AVAILABLE at that moment (spec §4.5), so a test passing here
means the step order also works on real TF Serving.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfstack.serving.rollout import (
    ConfigLockError,
    GateError,
    ModelState,
    QualityPolicy,
    Rollout,
    RolloutError,
    RolloutPolicy,
    WatchThresholds,
    publish_saved_model,
)
from tfstack.serving.rollout._state import ConfigFile

MODEL = "iris"
SIGNATURES = {
    "serving_default": {
        "method_name": "tensorflow/serving/predict",
        "inputs": {"features": {"dtype": "float32", "shape": [-1, 4]}},
        "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 3]}, "class_id": {"dtype": "int64", "shape": [-1]}},
    }
}


def make_version(base: Path, version: int, *, accuracy: float = 0.9, signatures=SIGNATURES, loadable: bool = False) -> Path:
    """A version directory with a manifest; `loadable` puts a real (TF1 half_plus_two) SavedModel in
    it, for steps that publish: export checks a copied SavedModel the way TF Serving loads it."""
    path = base / MODEL / str(version)
    if loadable:
        from tests.support.models import build_half_plus_two_tf1

        build_half_plus_two_tf1(path)
        (path / "assets.extra").mkdir()
    else:
        (path / "assets.extra").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"not really a SavedModel")
    manifest = {"model_name": MODEL, "version": version, "metrics": {"accuracy": accuracy}, "signatures": signatures}
    (path / "assets.extra" / "manifest.json").write_text(json.dumps(manifest))
    return path


class FakeServer:
    """Loads what the config pins, enforces the label rule, records every reload."""

    def __init__(self) -> None:
        self.states: dict[int, str] = {}
        self.labels: dict[str, int] = {}
        self.reloads: list[tuple[tuple[int, ...], dict[str, int]]] = []
        self.broken: set[int] = set()
        self.interrupt_on_label: str | None = None

    def reload(self, config) -> None:
        entry = next(e for e in config.model_config_list.config if e.name == MODEL)
        versions = tuple(entry.model_version_policy.specific.versions)
        labels = dict(entry.version_labels)
        for label, version in labels.items():
            if self.states.get(version) != "AVAILABLE":
                raise RolloutError(
                    f"FAILED_PRECONDITION: Request to assign label to version {version} of model {MODEL}, "
                    "which is not currently available for inference"
                )
        self.reloads.append((versions, labels))
        for version in versions:
            if self.states.get(version) != "AVAILABLE":
                self.states[version] = "END" if version in self.broken else "AVAILABLE"
        for version, state in list(self.states.items()):
            if version not in versions and state == "AVAILABLE":
                self.states[version] = "END"
        self.labels = labels

    def wait_available(self, model_name, version, timeout) -> None:
        if self.states.get(version) != "AVAILABLE":
            raise RolloutError(f"Version {version} of model {model_name!r} did not become AVAILABLE: failed to load")

    def wait_label(self, model_name, label, version, timeout) -> None:
        if label == self.interrupt_on_label:
            raise KeyboardInterrupt  # a crash mid-step
        assert self.labels.get(label) == version

    def wait_unloaded(self, model_name, version, timeout) -> bool:
        return self.states.get(version) != "AVAILABLE"

    def version_states(self, model_name):
        return dict(self.states)

    def predictors(self, model_name, version):
        return {}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    base = tmp_path / "models"
    make_version(base, 1, accuracy=0.90)
    make_version(base, 2, accuracy=0.92)
    return base


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_rollout(tmp_path: Path, repo: Path, server, clock, **policy) -> Rollout:
    policy.setdefault("skip_gates", ("infra",))
    return Rollout(tmp_path / "models.config", repo, server=server, policy=RolloutPolicy(**policy), clock=clock)


def entry_of(rollout: Rollout):
    config = rollout.config.read()
    entry = next(e for e in config.model_config_list.config if e.name == MODEL)
    return tuple(entry.model_version_policy.specific.versions), dict(entry.version_labels)


@pytest.fixture
def live(tmp_path, repo, clock):
    """A rollout of iris with v1 stable on the fake server (bootstrapped like a real deployment)."""
    offline = make_rollout(tmp_path, repo, None, clock)
    offline.init(MODEL, 1)
    server = FakeServer()
    server.reload(offline.config.read())  # the server starts with the label-free config
    rollout = make_rollout(tmp_path, repo, server, clock)
    rollout.init(MODEL)
    return rollout, server


def test_init_without_server_writes_a_label_free_config_the_server_can_start_with(tmp_path, repo, clock):
    rollout = make_rollout(tmp_path, repo, None, clock)
    state = rollout.init(MODEL)
    assert state.stable == 2  # the latest on disk
    assert entry_of(rollout) == ((2,), {})
    text = rollout.config.path.read_text()
    assert "model_platform: \"tensorflow\"" in text and str(repo.absolute() / MODEL) in text


def test_init_with_server_adds_both_labels_on_the_loaded_version(live):
    rollout, server = live
    assert entry_of(rollout) == ((1,), {"stable": 1, "canary": 1})
    assert rollout.state(MODEL) == ModelState(stable=1)


def test_full_cycle_follows_tf_serving_label_rules(live, clock):
    rollout, server = live
    rollout.canary(MODEL, 2)
    assert entry_of(rollout) == ((1, 2), {"stable": 1, "canary": 2})
    # Phase order: load 2 beside 1 with the old labels, then move canary.
    assert server.reloads[-3] == ((1, 2), {"stable": 1, "canary": 1})

    rollout.promote(MODEL, grace_seconds=60)
    assert entry_of(rollout) == ((1, 2), {"stable": 2, "canary": 2})  # 1 kept loaded for the grace period
    assert server.states[1] == "AVAILABLE"

    reloads_before = len(server.reloads)
    rollout.rollback(MODEL)
    assert entry_of(rollout) == ((1, 2), {"stable": 1, "canary": 2})
    assert all(versions == (1, 2) for versions, _ in server.reloads[reloads_before:])  # one label move, no reload of 1

    rollout.promote(MODEL, grace_seconds=60)
    clock.now += 61
    rollout.finalize(MODEL)
    assert entry_of(rollout) == ((2,), {"stable": 2, "canary": 2})
    assert server.states[1] == "END"
    assert rollout.state(MODEL) == ModelState(stable=2, previous=1, previous_until=clock.now - 1)


def test_rollback_after_the_grace_period_loads_the_previous_version_before_moving_the_label(live, clock):
    rollout, server = live
    rollout.canary(MODEL, 2)
    rollout.promote(MODEL, grace_seconds=0)
    assert server.states[1] == "END"
    rollout.rollback(MODEL)
    assert entry_of(rollout) == ((1, 2), {"stable": 1, "canary": 2})
    assert server.states[1] == "AVAILABLE"


def test_a_second_rollback_drops_the_demoted_canary(live):
    rollout, server = live
    rollout.canary(MODEL, 2)
    rollout.promote(MODEL, grace_seconds=60)
    rollout.rollback(MODEL)
    rollout.rollback(MODEL)
    assert entry_of(rollout) == ((1,), {"stable": 1, "canary": 1})
    with pytest.raises(RolloutError, match="nothing to roll back"):
        rollout.rollback(MODEL)


def test_each_config_write_keeps_the_previous_file_as_backup(live):
    rollout, _ = live
    before = rollout.config.path.read_text()
    rollout.canary(MODEL, 2)
    backup = rollout.config.backup_path.read_text()
    assert backup != rollout.config.path.read_text()
    assert "versions: 2" in backup and before != backup  # the load phase's file, one write back
    assert not list(rollout.config.path.parent.glob("*.tmp"))


def test_steps_are_idempotent(live):
    rollout, server = live
    rollout.canary(MODEL, 2)
    text = rollout.config.path.read_text()
    assert rollout.canary(MODEL, 2).canary == 2
    rollout.finalize(MODEL)
    rollout.finalize(MODEL)
    assert rollout.config.path.read_text() == text


def test_a_crashed_step_is_completed_by_the_next_one(live):
    rollout, server = live
    rollout.canary(MODEL, 2)
    server.interrupt_on_label = "stable"
    with pytest.raises(KeyboardInterrupt):
        rollout.promote(MODEL, grace_seconds=60)
    assert rollout.state(MODEL).pending == "promote"
    server.interrupt_on_label = None
    state = rollout.finalize(MODEL)
    assert state.pending is None and state.stable == 2
    assert entry_of(rollout) == ((1, 2), {"stable": 2, "canary": 2})


def test_breaking_signature_stops_before_any_change(tmp_path, repo, live):
    rollout, server = live
    breaking = {"serving_default": {**SIGNATURES["serving_default"], "inputs": {"features": {"dtype": "float32", "shape": [-1, 5]}}}}
    make_version(repo, 3, signatures=breaking)
    config_before, state_before, reloads = rollout.config.path.read_bytes(), rollout.state(MODEL), len(server.reloads)
    with pytest.raises(GateError, match=r"input 'features' shape changed incompatibly: \[-1, 4\] -> \[-1, 5\]") as info:
        rollout.canary(MODEL, 3)
    assert "--allow-breaking" in str(info.value) and "nothing was changed" in str(info.value)
    assert rollout.config.path.read_bytes() == config_before
    assert rollout.state(MODEL) == state_before
    assert len(server.reloads) == reloads

    permissive = make_rollout(tmp_path, repo, server, rollout.clock, allow_breaking=True)
    assert permissive.canary(MODEL, 3).canary == 3


def test_worse_accuracy_stops_before_any_change(tmp_path, repo, live):
    rollout, server = live
    make_version(repo, 3, accuracy=0.80)
    config_before = rollout.config.path.read_bytes()
    with pytest.raises(GateError, match=r"accuracy=0.8 is worse than stable's 0.9 by 0.1 \(allowed: 0.01\)"):
        rollout.canary(MODEL, 3)
    assert rollout.config.path.read_bytes() == config_before
    assert rollout.state(MODEL) == ModelState(stable=1)
    lenient = make_rollout(tmp_path, repo, server, rollout.clock, quality=QualityPolicy(max_regression=0.2, floor=0.85))
    with pytest.raises(GateError, match="below the floor 0.85"):
        lenient.canary(MODEL, 3)


def test_a_version_that_fails_to_load_is_undone(live):
    rollout, server = live
    config_before = rollout.config.path.read_text()
    server.broken.add(2)
    with pytest.raises(RolloutError, match="did not become AVAILABLE"):
        rollout.canary(MODEL, 2)
    assert rollout.config.path.read_text() == config_before
    assert rollout.state(MODEL) == ModelState(stable=1)


def test_steps_need_an_initialised_model_and_a_canary(tmp_path, repo, clock):
    rollout = make_rollout(tmp_path, repo, FakeServer(), clock)
    with pytest.raises(RolloutError, match="not managed by rollout"):
        rollout.promote(MODEL)
    with pytest.raises(ValueError, match="version must be an int"):
        rollout.canary(MODEL, "2")  # type: ignore[arg-type]


def test_promote_without_canary_says_what_to_do(live):
    rollout, _ = live
    with pytest.raises(RolloutError, match="no canary to promote"):
        rollout.promote(MODEL)


def test_retire_never_removes_referenced_or_newer_versions(tmp_path, repo, live):
    rollout, server = live
    for version in (3, 4):
        make_version(repo, version)
    rollout.canary(MODEL, 2)
    rollout.promote(MODEL, grace_seconds=0)  # stable 2, previous 1 unloaded
    assert rollout.retire(MODEL, keep=1, dry_run=True) == [1]
    assert (repo / MODEL / "1").exists()
    assert rollout.retire(MODEL, keep=1) == [1]
    assert sorted(p.name for p in (repo / MODEL).iterdir() if p.name.isdigit()) == ["2", "3", "4"]
    assert rollout.state(MODEL).previous is None
    with pytest.raises(ValueError, match="keep must be an int >= 1"):
        rollout.retire(MODEL, keep=0)


def test_retire_keeps_the_previous_version_during_its_grace_period(live):
    rollout, _ = live
    rollout.canary(MODEL, 2)
    rollout.promote(MODEL, grace_seconds=60)
    assert rollout.retire(MODEL, keep=1) == []


def test_a_second_step_waits_for_the_lock(tmp_path, repo, clock):
    rollout = make_rollout(tmp_path, repo, None, clock, lock_timeout=0)
    with rollout._locked():
        with pytest.raises(ConfigLockError, match="Another rollout step holds"):
            make_rollout(tmp_path, repo, None, clock, lock_timeout=0).init(MODEL)


class Stats:
    def __init__(self, requests, errors, p99_ms):
        self.requests, self.errors, self.p99_ms = requests, errors, p99_ms

    @property
    def error_rate(self):
        return self.errors / self.requests if self.requests else 0.0


class ScriptedMetrics:
    def __init__(self, windows):
        self.windows = list(windows)

    def snapshot(self):
        return self.windows.pop(0) if self.windows else {}


class FakeTime:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_watch_rolls_back_a_canary_with_more_errors(live):
    rollout, _ = live
    rollout.canary(MODEL, 2)
    healthy = {"stable": Stats(100, 0, 10.0), "canary": Stats(30, 0, 11.0)}
    failing = {"stable": Stats(100, 0, 10.0), "canary": Stats(30, 3, 11.0)}
    fake = FakeTime()
    result = rollout.watch(MODEL, ScriptedMetrics([healthy, failing]), duration=60, interval=10,
                           sleep=fake.sleep, monotonic=fake.monotonic)
    assert result.rolled_back and result.checks == 2
    assert "error rate 10.00%" in result.reason
    assert entry_of(rollout) == ((1,), {"stable": 1, "canary": 1})


def test_watch_rolls_back_a_slow_canary_and_leaves_a_healthy_one(live):
    rollout, _ = live
    rollout.canary(MODEL, 2)
    fake = FakeTime()
    healthy = [{"stable": Stats(50, 0, 10.0), "canary": Stats(50, 0, 12.0)}] * 10
    result = rollout.watch(MODEL, ScriptedMetrics(healthy), duration=30, interval=10, sleep=fake.sleep, monotonic=fake.monotonic)
    assert not result.rolled_back and result.checks == 4 and fake.now == 30
    slow = [{"stable": Stats(50, 0, 10.0), "canary": Stats(50, 0, 40.0)}]
    result = rollout.watch(MODEL, ScriptedMetrics(slow), thresholds=WatchThresholds(max_p99_ratio=2.0),
                           duration=30, interval=10, sleep=fake.sleep, monotonic=fake.monotonic)
    assert result.rolled_back and "p99 latency 40.0 ms" in result.reason


def test_watch_finalizes_an_expired_grace_period(live, clock):
    rollout, _ = live
    rollout.canary(MODEL, 2)
    rollout.promote(MODEL, grace_seconds=5)
    clock.now += 10
    fake = FakeTime()
    rollout.watch(MODEL, ScriptedMetrics([]), duration=0, sleep=fake.sleep, monotonic=fake.monotonic)
    assert entry_of(rollout)[0] == (2,)


def test_publish_copies_a_saved_model_atomically_and_renumbers_its_manifest(tmp_path, repo):
    source = make_version(tmp_path / "elsewhere", 7, loadable=True)
    published = publish_saved_model(Rollout(tmp_path / "m.config", repo).repository, MODEL, source)
    assert published.version == 3
    manifest = json.loads((repo / MODEL / "3" / "assets.extra" / "manifest.json").read_text())
    assert manifest["version"] == 3 and manifest["published_from"] == str(source.absolute())
    assert not [p for p in (repo / MODEL).iterdir() if p.name.startswith(".staging")]
    again = publish_saved_model(Rollout(tmp_path / "m.config", repo).repository, MODEL, source)
    assert again.version == 3 and sorted(int(p.name) for p in (repo / MODEL).iterdir() if p.name.isdigit()) == [1, 2, 3]


def test_publish_explains_a_directory_without_a_saved_model(tmp_path, repo):
    run_dir = tmp_path / "runs" / "iris-1"
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    with pytest.raises(RolloutError, match="holds no saved_model.pb"):
        Rollout(tmp_path / "m.config", repo).publish(MODEL, run_dir)


def test_config_file_reads_an_existing_file_and_rejects_garbage(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'tensorflow' } }")
    assert ConfigFile(path).read().model_config_list.config[0].name == "a"
    path.write_text("model_config_list { nonsense")
    with pytest.raises(RolloutError, match="Cannot read the model config"):
        ConfigFile(path).read()


def test_policy_validates_its_arguments():
    with pytest.raises(ValueError, match="grace_seconds must be a number >= 0. Received: grace_seconds=-1"):
        RolloutPolicy(grace_seconds=-1)
    with pytest.raises(ValueError, match="skip_gates"):
        RolloutPolicy(skip_gates=("speed",))


def test_infra_gate_compares_served_outputs_with_the_in_process_model_and_undoes_a_mismatch(tmp_path, clock, half_plus_two_base):
    import shutil

    base = tmp_path / "models"
    for version in (1, 2):
        path = base / MODEL / str(version)
        shutil.copytree(half_plus_two_base / "123", path)
        (path / "assets.extra").mkdir(exist_ok=True)
        signatures = {"serving_default": {"inputs": {"x": {"dtype": "float32", "shape": None}},
                                          "outputs": {"y": {"dtype": "float32", "shape": None}}}}
        (path / "assets.extra" / "manifest.json").write_text(json.dumps({"metrics": {"accuracy": 1.0}, "signatures": signatures}))
        (path / "assets.extra" / "sample_request.json").write_text(json.dumps({"inputs": {"x": [1.0, 2.0]}}))

    class ServingServer(FakeServer):
        offset = 0.0

        def predictors(self, model_name, version):
            def predict(signature_name, inputs):
                return {"y": 0.5 * inputs["x"] + 2.0 + self.offset}

            return {"rest": predict, "grpc": predict}

    offline = make_rollout(tmp_path, base, None, clock)
    offline.init(MODEL, 1)
    server = ServingServer()
    server.reload(offline.config.read())
    rollout = Rollout(tmp_path / "models.config", base, server=server, clock=clock)  # every gate on
    rollout.init(MODEL)
    before = rollout.config.path.read_text()

    server.offset = 0.5
    with pytest.raises(GateError, match=r"(?s)infra gate FAILED.*grpc: outputs differ from the in-process model: y: max abs difference 0.5"):
        rollout.canary(MODEL, 2)
    assert rollout.config.path.read_text() == before
    assert server.states[2] == "END"  # loaded for the check, then unloaded again

    server.offset = 0.0
    assert rollout.canary(MODEL, 2).canary == 2


def test_the_rollout_package_names_its_public_api_and_resolving_it_imports_no_tensorflow():
    """`from tfstack.serving.rollout import Rollout, ...` works for every name in `__all__`, and
    none of them pulls in TensorFlow (only the canary's infra gate does, when it runs)."""
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "import tfstack.serving.rollout as rollout\n"
        "public = sorted(n for n in dir(rollout) if not n.startswith('_'))\n"
        "values = {n: getattr(rollout, n) for n in rollout.__all__}\n"
        "print(json.dumps({'all': rollout.__all__, 'public': public,\n"
        "                  'modules': sorted({v.__module__.rsplit('.', 1)[0] for v in values.values()}),\n"
        "                  'tensorflow': sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["all"] == report["public"]
    assert {"Rollout", "RolloutPolicy", "LiveServer", "Fleet", "RolloutError", "GateError", "WatchThresholds"} <= set(report["all"])
    assert report["modules"] == ["tfstack.serving", "tfstack.serving.rollout"]
    assert report["tensorflow"] == []
