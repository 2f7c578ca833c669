"""`tfstack train --local-workers N`: a whole multi-worker cluster on this machine, one command.

Starts N copies of the same `tfstack train --strategy multi-worker` command, each with a TF_CONFIG
naming N free ports on 127.0.0.1 and its own task index (worker 0 is the chief). Every output line
of every worker is relayed with a `[worker i]` prefix and kept in `<run_dir>/worker-<i>.log`. If a
worker fails, the others are stopped, and the error says which worker failed, how, and where its
log and the run's backup are: the same command resumes from that backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Sequence

from tfstack.training._errors import TrainingError
from tfstack.training._multiworker import BACKUP_DIRNAME

# How long a worker gets to exit after SIGINT before it is killed.
_STOP_GRACE_SECONDS = 3.0


class WorkerFailed(TrainingError):
    """A worker of a local cluster exited with an error; the others were stopped."""


@dataclasses.dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    log_path: Path
    relays: list[threading.Thread]
    last_error: str = ""


def free_loopback_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        # All bound at once, so the ports are distinct; released just before the workers bind them.
        return [sock.getsockname()[1] for sock in sockets]


def tf_config(ports: Sequence[int], index: int) -> str:
    """TF_CONFIG for worker `index` of a cluster of workers on 127.0.0.1 at `ports`."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def run_local_workers(
    command: Sequence[str],
    *,
    count: int,
    run_dir: Path,
    quiet: bool = False,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> None:
    """Run `command` (a full argv) as `count` workers of one cluster on loopback and wait for all.

    Args:
        command: the worker command, e.g. [python, -m, tfstack, train, --strategy, multi-worker, ...].
        run_dir: the run's directory, shared by the workers; the worker logs go there too.
        quiet: relay only the chief's standard output (the published path), unprefixed.

    Raises:
        WorkerFailed: a worker exited with a non-zero status or a signal; the others were stopped.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    run_dir.mkdir(parents=True, exist_ok=True)
    ports = free_loopback_ports(count)
    lock = threading.Lock()
    workers: list[_Worker] = []
    try:
        for index in range(count):
            workers.append(_start(command, index, ports, run_dir, quiet, stdout, stderr, lock))
        if not quiet:
            with lock:
                for worker in workers:
                    print(
                        f"[launcher] worker {worker.index}: pid {worker.process.pid}, 127.0.0.1:{ports[worker.index]}, "
                        f"log {worker.log_path}",
                        file=stderr,
                        flush=True,
                    )
        failed = _wait_for_all_or_first_failure(workers)
    except BaseException:
        _stop(workers)
        raise
    stopped = _stop(workers) if failed is not None else []
    for worker in workers:
        for relay in worker.relays:
            relay.join()
    if failed is not None:
        raise WorkerFailed(_failure_message(failed, workers, stopped, run_dir))


def _start(command, index, ports, run_dir, quiet, stdout, stderr, lock) -> _Worker:
    env = {
        **os.environ,
        "TF_CONFIG": tf_config(ports, index),
        # Workers write to pipes; unbuffered, their lines arrive as they happen.
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    process = subprocess.Popen(
        list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        errors="replace",
    )
    log_path = run_dir / f"worker-{index}.log"
    log = log_path.open("w", encoding="utf-8")
    worker = _Worker(index=index, process=process, log_path=log_path, relays=[])
    prefix = f"[worker {index}] "
    # Quiet: the chief's stdout is the published path, passed through as a single run prints it.
    out_prefix, out_target = ("", stdout) if quiet and index == 0 else (prefix, None if quiet else stdout)
    pending = [2]

    def relay(stream, target, line_prefix, is_stderr):
        for line in stream:
            with lock:
                log.write(line)
                log.flush()
                if target is not None:
                    target.write(line_prefix + line)
                    target.flush()
                if is_stderr and line.startswith("Error:"):
                    worker.last_error = line.strip()
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                log.close()

    worker.relays = [
        threading.Thread(target=relay, args=(process.stdout, out_target, out_prefix, False), daemon=True),
        threading.Thread(target=relay, args=(process.stderr, None if quiet else stderr, prefix, True), daemon=True),
    ]
    for thread in worker.relays:
        thread.start()
    return worker


def _wait_for_all_or_first_failure(workers: list[_Worker]) -> _Worker | None:
    running = list(workers)
    while running:
        for worker in list(running):
            try:
                code = worker.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            running.remove(worker)
            if code != 0:
                return worker
    return None


def _stop(workers: list[_Worker]) -> list[int]:
    """Interrupt the workers still running, kill those still there after a grace; their indexes.

    Not SIGTERM: a TensorFlow worker of a multi-worker cluster takes SIGTERM as a preemption
    notice and keeps training (tsl's preemption_notifier.cc replaces the handler). SIGINT
    raises KeyboardInterrupt, which lets a chief that is publishing clean up its staging; a
    worker blocked in a collective with a dead peer only notices it at the next Python line,
    so the grace is short.
    """
    alive = [w for w in workers if w.process.poll() is None]
    for worker in alive:
        worker.process.send_signal(signal.SIGINT)
    for worker in alive:
        try:
            worker.process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    return [w.index for w in alive]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _failure_message(failed: _Worker, workers: list[_Worker], stopped: list[int], run_dir: Path) -> str:
    parts = [
        f"Worker {failed.index} of {len(workers)} (pid {failed.process.pid}) {_exit_text(failed.process.returncode)}",
    ]
    if failed.last_error:
        parts[0] += f" ({failed.last_error})"
    chief = workers[0]
    outcome = "the chief had already finished" if chief is not failed and chief.process.returncode == 0 else "nothing was published"
    if stopped:
        parts.append(f"stopped worker(s) {', '.join(map(str, stopped))}")
    parts.append(outcome)
    parts.append(f"logs: {', '.join(str(w.log_path) for w in workers)}")
    backup = run_dir / BACKUP_DIRNAME
    if backup.is_dir():
        parts.append(f"the backup in {backup} is kept: run the same command again to resume from it")
    return "; ".join(parts) + "."
