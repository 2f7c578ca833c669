"""`tfstack bench` end to end against real embedded servers (tiny model, a handful of requests).

No timing is asserted: the machine is shared. The checks are that every report is written and
that its counts add up to what was asked for.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.models import build_half_plus

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 12


@pytest.fixture(scope="module")
def model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bench-models") / "half_plus_two"
    build_half_plus(base / "1")
    return base


def _bench(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfstack", "bench", *arguments],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )


def _rows(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "bench.csv", newline="") as source:
        return list(csv.DictReader(source))


def test_bench_starts_the_embedded_server_and_reports_every_scenario(model_base: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--protocol", "grpc,rest",
        "--concurrency", "1,3", "--batch-sizes", "1,2", "--requests", str(REQUESTS), "--warmup", "2",
        "--processes", "2", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("bench.csv", "bench.json", "bench.md", "bench.png"):
        assert (out / name).stat().st_size > 0, name
    assert "p99 ms" in result.stdout and "performance targets" in result.stdout

    rows = _rows(out)
    # baselines: in-process b=1 and b=2, official stub, tfstack client x2;
    # then per protocol and concurrency: floor + predict b=1 + predict b=2.
    assert len(rows) == 2 + 1 + 2 + 2 * 2 * 3
    assert {r["kind"] for r in rows} == {"in-process", "official-stub", "tfstack-client", "floor", "predict"}
    for row in rows:
        assert int(row["errors"]) == 0, row
        assert int(row["requests"]) == REQUESTS, row  # a request bound is exact across processes
        assert float(row["throughput_rps"]) > 0
        assert float(row["p50_ms"]) <= float(row["p90_ms"]) <= float(row["p95_ms"]) <= float(row["p99_ms"])
        assert float(row["examples_per_s"]) == pytest.approx(float(row["throughput_rps"]) * int(row["batch_size"]))
    three = [r for r in rows if r["concurrency"] == "3" and r["kind"] == "predict"]
    assert three and all(r["processes"] == "2" for r in three)

    document = json.loads((out / "bench.json").read_text())
    assert len(document["measurements"]) == len(rows)
    assert document["command"].startswith("tfstack bench")
    issue3 = [t for t in document["targets"] if t["name"].startswith("issue 3")]
    assert len(issue3) == 2 and all(t["met"] in (True, False) for t in issue3)


def test_bench_targets_a_running_server_open_and_closed_loop(model_base: Path, tmp_path: Path):
    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    out = tmp_path / "report"
    request = ServeRequest(models={"half_plus_two": model_base})
    with serve_models(EmbeddedBackend(), request, workdir=tmp_path / "server") as endpoint:
        result = _bench(
            "--model-name", "half_plus_two", "--rest", endpoint.rest_url, "--grpc", endpoint.grpc_target,
            "--no-baselines", "--no-floor", "--concurrency", "2", "--batch-sizes", "1", "--rate", "40",
            "--requests", str(REQUESTS), "--warmup", "1", "--processes", "2", "--output-dir", str(out),
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(out)
    assert [(r["protocol"], r["mode"]) for r in rows] == [("grpc", "closed"), ("rest", "closed"), ("grpc", "open"), ("rest", "open")]
    for row in rows:
        assert int(row["requests"]) + int(row["errors"]) == REQUESTS, row
        assert int(row["errors"]) == 0, row
        assert row["batching"] == "server"


def test_an_unreachable_server_is_a_clear_error_not_a_hang():
    from tfstack.serving.bench import _bench
    from tests.support.server import free_port

    port = free_port()  # nothing listens there
    target = _bench.Target(model_name="m", rest_url=f"http://127.0.0.1:{port}", grpc_target=None)
    scenario = _bench.Scenario(kind="floor", protocol="rest", concurrency=2)
    with pytest.raises(_bench.BenchError, match=rf"failed while starting: .*127\.0\.0\.1:{port}"):
        _bench.run_scenario(scenario, target=target, payloads={}, limits=_bench.Limits(duration=1.0, warmup=1),
                            processes=2)
