"""Multi-worker pieces that need no cluster: the launcher (driven with tiny fake worker processes),
the worker's role, the default run directory, the starting-epoch check and the CLI's checks.
Real two-worker training is in tests/integration/test_multiworker.py."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfstack.training import TrainConfig, TrainingError
from tfstack.training.cli import train as train_command
from tfstack.training._launcher import WorkerFailed, free_loopback_ports, run_local_workers, tf_config
from tfstack.training._multiworker import worker_role
from tfstack.training._train import multi_worker_run_dir


def _fake_worker(tmp_path: Path, body: str) -> list[str]:
    """A worker command: Python running `body` with `index` and `config` (its parsed TF_CONFIG)."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, os, sys\n"
        "config = json.loads(os.environ['TF_CONFIG'])\n"
        "index = config['task']['index']\n" + textwrap.dedent(body)
    )
    return [sys.executable, str(script)]


class _Stream:
    """A text stream that keeps what the launcher relays."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        pass


# -------------------------------------------------------------------------------- the launcher


def test_each_worker_gets_its_index_in_one_loopback_cluster_and_its_lines_are_prefixed(tmp_path: Path) -> None:
    command = _fake_worker(tmp_path, """
        print(json.dumps(config))
        print(f"note from {index}", file=sys.stderr)
    """)
    out, err = _Stream(), _Stream()

    run_local_workers(command, count=3, run_dir=tmp_path / "run", stdout=out, stderr=err)

    configs = {}
    for line in out.lines:
        prefix, _, payload = line.partition("] ")
        configs[int(prefix.removeprefix("[worker "))] = json.loads(payload)
    assert sorted(configs) == [0, 1, 2]
    clusters = {json.dumps(c["cluster"]) for c in configs.values()}
    assert len(clusters) == 1, "every worker must see the same cluster"
    addresses = configs[0]["cluster"]["worker"]
    assert len(addresses) == 3 and len(set(addresses)) == 3
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    assert {i: c["task"] for i, c in configs.items()} == {i: {"type": "worker", "index": i} for i in range(3)}
    assert sorted(line for line in err.lines if "note from" in line) == [f"[worker {i}] note from {i}" for i in range(3)]
    # Each worker's whole output is kept, unprefixed, next to the run. Its stdout and stderr come
    # through two pipes read by two threads, so the order between them is not defined (CI saw both).
    assert sorted((tmp_path / "run" / "worker-1.log").read_text().splitlines()) == sorted(
        [json.dumps(configs[1]), "note from 1"]
    )


def test_quiet_passes_only_the_chiefs_stdout_through_unprefixed(tmp_path: Path) -> None:
    command = _fake_worker(tmp_path, """
        print(f"/models/digits/{index + 7}")
        print("progress", file=sys.stderr)
    """)
    out, err = _Stream(), _Stream()

    run_local_workers(command, count=2, run_dir=tmp_path / "run", quiet=True, stdout=out, stderr=err)

    assert out.lines == ["/models/digits/7"]
    assert err.lines == []
    assert "progress" in (tmp_path / "run" / "worker-1.log").read_text()


def test_a_failing_worker_stops_the_others_and_says_what_happened(tmp_path: Path) -> None:
    (tmp_path / "run" / "backup").mkdir(parents=True)
    # Worker 0 would run for a minute; worker 1 fails as soon as it starts.
    command = _fake_worker(tmp_path, """
        import time
        if index == 1:
            print("Error: Training 'digits' failed: boom", file=sys.stderr)
            sys.exit(3)
        time.sleep(60)
    """)
    err = _Stream()

    with pytest.raises(WorkerFailed) as info:
        run_local_workers(command, count=2, run_dir=tmp_path / "run", stdout=_Stream(), stderr=err)

    message = str(info.value)
    assert isinstance(info.value, TrainingError)
    assert message.startswith("Worker 1 of 2 (pid ")
    assert "exited with status 3 (Error: Training 'digits' failed: boom)" in message
    assert "stopped worker(s) 0; nothing was published" in message
    assert str(tmp_path / "run" / "worker-0.log") in message and str(tmp_path / "run" / "worker-1.log") in message
    assert f"the backup in {tmp_path / 'run' / 'backup'} is kept: run the same command again to resume" in message
    assert "\n" not in message


def test_a_worker_killed_by_a_signal_is_named_so(tmp_path: Path) -> None:
    command = _fake_worker(tmp_path, """
        import signal, time
        if index == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
    """)

    with pytest.raises(WorkerFailed, match=r"^Worker 0 of 2 \(pid \d+\) was killed by SIGKILL; stopped worker\(s\) 1; nothing"):
        run_local_workers(command, count=2, run_dir=tmp_path / "run", stdout=_Stream(), stderr=_Stream())


def test_free_loopback_ports_are_distinct() -> None:
    ports = free_loopback_ports(4)
    assert len(set(ports)) == 4 and all(0 < p < 65536 for p in ports)


def test_tf_config_is_what_multi_worker_mirrored_strategy_reads() -> None:
    assert json.loads(tf_config([5000, 5001], 1)) == {
        "cluster": {"worker": ["127.0.0.1:5000", "127.0.0.1:5001"]},
        "task": {"type": "worker", "index": 1},
    }


# -------------------------------------------------------------------------------- roles and run directories


def _strategy(cluster: dict, task_type: str | None, task_id: int | None, chief: bool):
    resolver = types.SimpleNamespace(
        cluster_spec=lambda: types.SimpleNamespace(as_dict=lambda: cluster), task_type=task_type, task_id=task_id
    )
    return types.SimpleNamespace(cluster_resolver=resolver, extended=types.SimpleNamespace(should_checkpoint=chief))


@pytest.mark.parametrize(
    ("cluster", "task_type", "task_id", "chief", "expected"),
    [
        ({}, None, None, True, (0, 1, True)),
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True, (0, 2, True)),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False, (1, 2, False)),
        # With a separate chief task, the workers come after it.
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "chief", 0, True, (0, 3, True)),
        ({"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "worker", 1, False, (2, 3, False)),
    ],
)
def test_worker_role(cluster, task_type, task_id, chief, expected) -> None:
    role = worker_role(_strategy(cluster, task_type, task_id, chief))
    assert (role.index, role.count, role.is_chief) == expected


def test_multi_worker_run_dir_is_the_same_for_the_same_command_and_cluster() -> None:
    config = TrainConfig(model="mlp", epochs=3, strategy="multi-worker")

    first = multi_worker_run_dir(config, "digits", workers=2)
    assert first == multi_worker_run_dir(config, "digits", workers=2)
    assert first.parent == Path("runs") and first.name.startswith("digits-")
    # An explicit run_dir is not part of the digest; other settings and cluster sizes are.
    assert multi_worker_run_dir(TrainConfig(model="mlp", epochs=3, strategy="multi-worker", run_dir="x"), "digits", workers=2) == first
    assert multi_worker_run_dir(TrainConfig(model="mlp", epochs=4, strategy="multi-worker"), "digits", workers=2) != first
    assert multi_worker_run_dir(config, "digits", workers=3) != first


# -------------------------------------------------------------------------------- the starting-epoch check


class _FakeCluster:
    """`strategy.reduce` over this worker and others that start at `others`."""

    def __init__(self, others: list[int]) -> None:
        self.others = others
        self.mine: float | None = None

    def reduce(self, op, value, axis=None):
        import numpy as np

        if op == "MEAN":
            self.mine = float(value)
        epochs = [self.mine, *self.others]
        mean = float(np.mean(epochs))
        # SUM is asked for the squared deviations; every worker contributes its own.
        return np.float32(mean if op == "MEAN" else sum((e - mean) ** 2 for e in epochs))


def _starting_epoch_check(strategy, lines: list[str]):
    from tfstack.training._multiworker import _same_starting_epoch_class

    return _same_starting_epoch_class()(strategy, 6, Path("/runs/x/backup"), lines.append)


def test_workers_that_resume_from_different_epochs_fail_instead_of_hanging() -> None:
    check = _starting_epoch_check(_FakeCluster(others=[0]), [])

    with pytest.raises(TrainingError, match=r"resumed from different epochs \(this one from epoch 2.*Put --run-dir on storage"):
        check.on_epoch_begin(2)


def test_a_resumed_start_is_logged_once() -> None:
    lines: list[str] = []
    check = _starting_epoch_check(_FakeCluster(others=[2]), lines)

    check.on_epoch_begin(2)
    check.on_epoch_begin(3)

    assert check.first_epoch == 2
    assert lines == ["Resumed from the backup in /runs/x/backup: 2 of 6 epochs were done; training epochs 3-6."]


# -------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--local-workers", "0"], "--local-workers must be >= 1. Received: local_workers=0"),
        (["--local-workers", "2", "--strategy", "mirrored"], "Received: strategy='mirrored'"),
    ],
)
def test_bad_local_worker_options_fail_before_anything_starts(tmp_path: Path, args, message) -> None:
    result = CliRunner().invoke(train_command, [*args, "--base-path", str(tmp_path / "m"), "--run-dir", str(tmp_path / "r")])

    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "r").exists()


def test_local_workers_run_the_same_options_as_multi_worker_processes(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_run(command, *, count, run_dir, quiet):
        calls.append((command, count, run_dir, quiet))

    monkeypatch.setattr("tfstack.training._launcher.run_local_workers", fake_run)
    result = CliRunner().invoke(
        train_command,
        ["--local-workers", "2", "--model", "mlp", "--hidden", "16,8", "--epochs", "3", "--quiet",
         "--base-path", str(tmp_path / "m")],
    )

    assert result.exit_code == 0, result.output
    ((command, count, run_dir, quiet),) = calls
    assert command[:4] == [sys.executable, "-m", "tfstack", "train"]
    assert command[4:] == [
        "--model", "mlp", "--hidden", "16,8", "--epochs", "3", "--base-path", str(tmp_path / "m"), "--quiet",
        "--strategy", "multi-worker", "--run-dir", str(run_dir),
    ]
    assert count == 2 and quiet
    # Without --run-dir, the multi-worker default, made absolute so every worker agrees on it.
    expected = multi_worker_run_dir(
        TrainConfig(model="mlp", hidden=(16, 8), epochs=3, strategy="multi-worker"), "digits", workers=2
    )
    assert run_dir == expected.absolute()


def test_a_lost_peer_is_reported_on_one_line_without_tensorflows_python_stack() -> None:
    import tensorflow as tf

    from tfstack.training._train import _tf_error_text

    message = (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent call last):\n"
        '  File "/usr/bin/tfstack", line 8, in <module>\n\n'
        "Collective ops is aborted by: The following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\nThe tasks have crashed.\n\t [[{{node CollectiveReduceV2}}]]"
    )

    assert _tf_error_text(tf.errors.UnavailableError(None, None, message)) == (
        "Collective ops is aborted by: The following tasks are unhealthy (stopped sending heartbeats): "
        "/job:worker/replica:0/task:1 The tasks have crashed."
    )
