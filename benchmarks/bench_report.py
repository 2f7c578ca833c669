"""Render a `tfstack bench` JSON report (and optionally client_overhead.py's JSON) as markdown.

docs/performance.md is written from this output, so its tables can be regenerated:

  .venv/bin/tfstack bench --model-name digits --model-base-path models/digits --output-dir out
  .venv/bin/python benchmarks/bench_report.py out/bench.json [--client-overhead co.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def _load(row: dict) -> str:
    return f"{row['rate']:g}/s open" if row["rate"] is not None else f"c={row['concurrency']}"


def measurements_table(document: dict, *, kinds: tuple[str, ...]) -> str:
    rows = [r for r in document["measurements"] if r["kind"] in kinds]
    floors = {(r["protocol"], r["concurrency"], r["batching"], r.get("generator")): r for r in document["measurements"]
              if r["kind"] == "floor" and r["rate"] is None}
    in_process = {r["batch_size"]: r for r in document["measurements"] if r["kind"] == "in-process"}
    out = ["| kind | protocol | generator | load | batch | batching | ok | errors | req/s | examples/s | p50 ms | p90 ms "
           "| p95 ms | p99 ms | req/s ÷ empty | p50 ÷ in-process | load avg |",
           "|" + "---|" * 17]
    for r in rows:
        floor = floors.get((r["protocol"], r["concurrency"], r["batching"], r.get("generator")))
        x_floor = r["throughput_rps"] / floor["throughput_rps"] if r["kind"] == "predict" and floor and r["rate"] is None else None
        base = in_process.get(r["batch_size"])
        x_in = (r["p50_ms"] / base["p50_ms"] if base and r["kind"] not in ("in-process", "floor") and r["p50_ms"] is not None
                else None)
        out.append(
            f"| {r['kind']} | {r['protocol'] or '-'} | {r.get('generator', 'python')} | {_load(r)} | {r['batch_size']} | {r['batching']} | {r['requests']} "
            f"| {r['errors']} | {_fmt(r['throughput_rps'], 0)} | {_fmt(r['examples_per_s'], 0)} | {_fmt(r['p50_ms'])} "
            f"| {_fmt(r['p90_ms'])} | {_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(x_floor, 2)} | {_fmt(x_in, 1)} "
            f"| {_fmt(r['load_avg_1m'], 2)} |"
        )
    return "\n".join(out)


def breakdown(document: dict) -> str:
    # Older reports (before the breakdown existed) have "targets" instead.
    lines = document.get("breakdown") or [f"{t['name']}: {t['measured']}" for t in document.get("targets", [])]
    return "\n".join(f"- {line}" for line in lines)


def machine(document: dict) -> str:
    m = document["machine"]
    return (f"{m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, {m['platform']}; Python {m['python']}, "
            f"TensorFlow {m['tensorflow']}, tensorflow-serving-api {m['tensorflow-serving-api']}, grpcio {m['grpcio']}, "
            f"aiohttp {m['aiohttp']}, numpy {m['numpy']}")


def client_overhead(document: dict) -> str:
    out = ["| measurement | figures |", "|---|---|"]
    for section, rows in document.items():
        for name, value in rows.items():
            if isinstance(value, dict):
                figures = ", ".join(f"{k} {v:,.3f}" for k, v in value.items())
            else:
                figures = f"{value:.3f}"
            out.append(f"| {section}: {name} | {figures} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_json", type=Path)
    parser.add_argument("--client-overhead", type=Path, default=None)
    args = parser.parse_args()
    document = json.loads(args.bench_json.read_text())
    print(f"Command: `{document['command']}`\n\nMachine: {machine(document)}\n")
    print("### Where a batch-1 Predict's time goes\n\n" + breakdown(document) + "\n")
    print("### Ratios to the baselines\n\n| ratio | value |\n|---|---|")
    for name, value in document["ratios"].items():
        print(f"| {name} | {_fmt(value, 2)} |")
    print("\n### Baselines (concurrency 1, one request at a time)\n")
    print(measurements_table(document, kinds=("in-process", "official-stub", "tfstack-client")) + "\n")
    print("### Server sweep\n")
    print(measurements_table(document, kinds=("floor", "predict")) + "\n")
    if args.client_overhead:
        print("### Client overhead (benchmarks/client_overhead.py)\n")
        print(client_overhead(json.loads(args.client_overhead.read_text())))


if __name__ == "__main__":
    main()
