"""`tfstack bench` end to end against real embedded servers (tiny model, a handful of requests).

No timing is asserted: the machine is shared. The checks are that every report is written and
that its counts add up to what was asked for.
"""

from __future__ import annotations

import csv
import json
import shutil
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
    assert "p99 ms" in result.stdout and "Where a batch-1 Predict's time goes" in result.stdout
    # What a user sees names no project bookkeeping (issue numbers, internal targets).
    assert "issue" not in result.stdout.lower() and "target" not in result.stdout.lower()

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
    assert {r["generator"] for r in rows} == {"python"}  # --requests: the C tools run for a duration only
    assert any(line.startswith("grpc (python), batching off: c=1 Predict p50") for line in document["breakdown"])


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
    from tfstack.serving import bench
    from tests.support.server import free_port

    port = free_port()  # nothing listens there
    target = bench.Target(model_name="m", rest_url=f"http://127.0.0.1:{port}", grpc_target=None)
    scenario = bench.Scenario(kind="floor", protocol="rest", concurrency=2)
    with pytest.raises(bench.BenchError, match=rf"failed while starting: .*127\.0\.0\.1:{port}"):
        bench.run_scenario(scenario, target=target, payloads={}, limits=bench.Limits(duration=1.0, warmup=1),
                            processes=2)


@pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("h2load")), reason="wrk and h2load are not installed")
def test_bench_drives_the_server_with_wrk_and_h2load_next_to_the_empty_request(model_base: Path, tmp_path: Path):
    out = tmp_path / "report"
    result = _bench(
        "--model-name", "half_plus_two", "--model-base-path", str(model_base), "--protocol", "grpc,rest",
        "--concurrency", "1,2", "--batch-sizes", "1", "--duration", "1", "--warmup", "2", "--no-baselines",
        "--load-generator", "c", "--output-dir", str(out),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _rows(out)
    assert sorted((r["protocol"], r["generator"], r["kind"], r["concurrency"]) for r in rows) == sorted(
        (protocol, tool, kind, c) for protocol, tool in (("grpc", "h2load"), ("rest", "wrk"))
        for kind in ("floor", "predict") for c in ("1", "2"))
    for row in rows:
        assert int(row["errors"]) == 0, row
        assert int(row["requests"]) > 0 and float(row["p50_ms"]) <= float(row["p99_ms"]), row
    assert "h2load" in result.stdout and "wrk" in result.stdout


def test_bench_refuses_a_remote_target_before_sending_anything(tmp_path: Path):
    result = _bench("--model-name", "m", "--rest", "http://192.0.2.1:8501", "--protocol", "rest",
                    "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unless --allow-remote" in result.stderr and "192.0.2.1" in result.stderr
    assert not (tmp_path / "out").exists()
