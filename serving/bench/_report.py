"""`tfstack bench` reports: baseline ratios, the latency breakdown, CSV, JSON, the chart and tables."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tfstack.serving.bench._load import Measurement
from tfstack.serving.bench._plan import (
    GENERATOR_PYTHON,
    KIND_FLOOR,
    KIND_IN_PROCESS,
    KIND_OFFICIAL_STUB,
    KIND_PREDICT,
    KIND_REPLAY,
    KIND_TFSTACK_CLIENT,
    PROTOCOLS,
)

# --------------------------------------------------------------------------------------------
# ratios, the time breakdown, reports


def _find(measurements: Sequence[Measurement], **fields: Any) -> Measurement | None:
    for m in measurements:
        if all(getattr(m.scenario, k) == v for k, v in fields.items()):
            return m
    return None


def baseline_ratios(measurements: Sequence[Measurement]) -> dict[str, float]:
    """The comparisons the report publishes (NaN where a term was not measured)."""
    def p50(**fields: Any) -> float:
        m = _find(measurements, **fields)
        return m.stats.p50_ms if m is not None else math.nan

    ratios = {}
    stub = p50(kind=KIND_OFFICIAL_STUB, protocol="grpc")
    for protocol in PROTOCOLS:
        ours = p50(kind=KIND_TFSTACK_CLIENT, protocol=protocol)
        ratios[f"tfstack client {protocol} p50 / official stub p50"] = ours / stub
    in_process = p50(kind=KIND_IN_PROCESS, batch_size=1)
    for protocol in PROTOCOLS:
        predict = p50(kind=KIND_PREDICT, protocol=protocol, concurrency=1, batch_size=1, rate=None)
        ratios[f"{protocol} predict c=1 b=1 p50 / in-process p50"] = predict / in_process
    return ratios


def breakdown(measurements: Sequence[Measurement]) -> list[str]:
    """Where a batch-1 Predict's time goes, one line per protocol, generator and batching setting.

    At concurrency 1: Predict p50 = empty request p50 (the server's stack and the round trip) +
    in-process p50 (the model, as the server runs it) + the rest (decoding, tensor conversion,
    hand-offs, encoding). At the highest concurrency measured: Predict throughput as a fraction of
    the empty request's.
    """
    lines = []
    in_process = _find(measurements, kind=KIND_IN_PROCESS, batch_size=1)
    keys = dict.fromkeys((m.scenario.protocol, m.scenario.generator, m.scenario.batching) for m in measurements
                         if m.scenario.kind == KIND_PREDICT and m.scenario.rate is None)
    for protocol, generator, batching in keys:
        where = dict(protocol=protocol, generator=generator, batching=batching, rate=None)
        name = f"{protocol} ({generator}), batching {batching}"
        predict = _find(measurements, kind=KIND_PREDICT, concurrency=1, batch_size=1, **where)
        empty = _find(measurements, kind=KIND_FLOOR, concurrency=1, **where)
        if predict is not None and empty is not None and predict.stats.requests and empty.stats.requests:
            text = (f"{name}: c=1 Predict p50 {predict.stats.p50_ms * 1e3:,.0f} us = empty request "
                    f"{empty.stats.p50_ms * 1e3:,.0f} us")
            if in_process is not None and in_process.stats.requests:
                rest = predict.stats.p50_ms - empty.stats.p50_ms - in_process.stats.p50_ms
                text += f" + model in-process {in_process.stats.p50_ms * 1e3:,.0f} us + request path {rest * 1e3:,.0f} us"
            else:
                text += f" + {(predict.stats.p50_ms - empty.stats.p50_ms) * 1e3:,.0f} us"
            lines.append(text)
        top = max((m.scenario.concurrency for m in measurements if m.scenario.kind == KIND_PREDICT
                   and m.scenario.concurrency > 1 and all(getattr(m.scenario, k) == v for k, v in where.items())), default=None)
        if top is not None:
            predict = _find(measurements, kind=KIND_PREDICT, concurrency=top, batch_size=1, **where)
            empty = _find(measurements, kind=KIND_FLOOR, concurrency=top, **where)
            if predict is not None and empty is not None and empty.stats.throughput_rps:
                lines.append(f"{name}: c={top} Predict {predict.stats.throughput_rps:,.0f}/s = "
                             f"{predict.stats.throughput_rps / empty.stats.throughput_rps:.2f}x the empty request's "
                             f"{empty.stats.throughput_rps:,.0f}/s")
    return lines


def machine_info() -> dict[str, Any]:
    """Where the numbers came from: CPUs, CPU model, RAM, Python and library versions."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    except OSError:
        info["cpu_model"] = ""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kb = int(next(line.split()[1] for line in meminfo.splitlines() if line.startswith("MemTotal")))
        info["ram_gib"] = round(kb / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        info["ram_gib"] = None
    from importlib import metadata

    for package in ("tensorflow", "tensorflow-serving-api", "grpcio", "aiohttp", "numpy"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


CSV_FIELDS = (
    "kind", "protocol", "mode", "concurrency", "rate", "batch_size", "batching", "generator", "requests", "errors", "elapsed_s",
    "throughput_rps", "examples_per_s", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "processes", "load_avg_1m",
)


def write_csv(measurements: Sequence[Measurement], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.DictWriter(sink, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for m in measurements:
            writer.writerow(m.row())


def write_json(measurements: Sequence[Measurement], path: Path, *, command: str, extra: Mapping[str, Any]) -> None:
    document = {
        "command": command,
        "machine": machine_info(),
        "measurements": [m.row() for m in measurements],
        "ratios": baseline_ratios(measurements),
        "breakdown": breakdown(measurements),
        **extra,
    }
    # NaN is not JSON; a missing value is null.
    text = json.dumps(document, indent=1, default=str)
    path.write_text(text.replace("NaN", "null"), encoding="utf-8")


def _plain_ticks(axis: Any) -> None:
    """Log-scale axes labelled 1, 2, 5, 10, 20, 50, ... 1,000 (no 10^3 notation)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def plain(value: float, _: Any) -> str:
        return f"{value:,.0f}" if value >= 1 else f"{value:g}"

    for which in (axis.xaxis, axis.yaxis):
        which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        which.set_major_formatter(FuncFormatter(plain))
        which.set_minor_formatter(NullFormatter())


def write_chart(measurements: Sequence[Measurement], path: Path) -> None:
    """Latency against throughput (p50 left, p99 right), one line per protocol/kind/batch size/batching/generator.

    The empty request is drawn dashed; the one-at-a-time baselines (in-process, official stub,
    tfstack client) are horizontal dotted lines at their latency.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Batch size 0 stands for a replay's logged batch sizes (keys must sort).
    series: dict[tuple[str, str, int, str, str], list[Measurement]] = {}
    for m in measurements:
        s = m.scenario
        if s.kind in (KIND_PREDICT, KIND_FLOOR, KIND_REPLAY) and s.rate is None and m.stats.requests:
            series.setdefault((s.kind, s.protocol, s.batch_size or 0, s.batching, s.generator), []).append(m)
    baselines = [m for m in measurements if m.scenario.kind in (KIND_IN_PROCESS, KIND_OFFICIAL_STUB, KIND_TFSTACK_CLIENT)
                 and m.scenario.batch_size == 1 and m.stats.requests]
    figure, axes = plt.subplots(1, 2, figsize=(13, 6.5), sharex=True)
    colours = {"grpc": "tab:blue", "rest": "tab:orange"}
    baseline_colours = {(KIND_IN_PROCESS, ""): "tab:green", (KIND_OFFICIAL_STUB, "grpc"): "tab:purple",
                        (KIND_TFSTACK_CLIENT, "grpc"): "tab:brown", (KIND_TFSTACK_CLIENT, "rest"): "tab:olive"}
    for axis, stat in zip(axes, ("p50_ms", "p99_ms")):
        for (kind, protocol, batch, batching, generator), points in sorted(series.items()):
            points.sort(key=lambda m: m.scenario.concurrency)
            x = [m.stats.throughput_rps for m in points]
            y = [getattr(m.stats, stat) for m in points]
            style = {"color": colours.get(protocol, "tab:grey"), "alpha": 0.5 if kind == KIND_FLOOR else 1.0}
            dashes = "--" if kind == KIND_FLOOR else ("-" if batch == 1 else "-.")
            marker = "s" if batching == "on" else ("^" if batch > 1 else "o")
            if generator != GENERATOR_PYTHON:
                style["markerfacecolor"] = "white"
            what = {KIND_FLOOR: "empty request", KIND_REPLAY: "replayed logs"}.get(kind, f"predict b={batch}")
            axis.plot(x, y, dashes, marker=marker, label=f"{protocol} {what}, batching {batching}, {generator}", **style)
            for m, value in zip(points, y):
                axis.annotate(f"c{m.scenario.concurrency}", (m.stats.throughput_rps, value), fontsize=7,
                              textcoords="offset points", xytext=(3, 3))
        for m in baselines:
            s = m.scenario
            name = f"{s.kind} {s.protocol}".strip() + f" (c=1, batching {s.batching})"
            axis.axhline(getattr(m.stats, stat), linestyle=":", linewidth=1.2,
                         color=baseline_colours.get((s.kind, s.protocol), "tab:grey"), label=name)
        axis.set_xlabel("throughput (requests/s, log scale)")
        axis.set_ylabel(f"{stat[:3]} latency (ms, log scale)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        _plain_ticks(axis)
        axis.set_title(f"{stat[:3]} latency vs throughput")
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize=8)
    figure.suptitle("tfstack bench, closed loop (point labels = concurrency; dotted: one-at-a-time baselines)")
    figure.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 3), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def results_table(measurements: Sequence[Measurement], *, title: str = "tfstack bench") -> Any:
    """A rich Table of every measurement (under 100 columns wide); the CSV has every field (p90, p95...).

    `÷empty` is Predict throughput over the empty request's at the same load; `÷model` is p50
    latency over the in-process model call's.
    """
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, 1), collapse_padding=True)
    for column in ("request", "proto", "by", "load", "b", "batching", "req/s", "p50 ms", "p99 ms", "err",
                   "÷empty", "÷model", "load avg"):
        table.add_column(column, justify="left" if column in ("request", "proto", "by", "load", "batching") else "right",
                         no_wrap=True)
    in_process = {m.scenario.batch_size: m.stats.p50_ms for m in measurements if m.scenario.kind == KIND_IN_PROCESS}
    names = {KIND_FLOOR: "empty", KIND_IN_PROCESS: "in-process", KIND_OFFICIAL_STUB: "stub", KIND_TFSTACK_CLIENT: "client"}
    for m in measurements:
        s, st = m.scenario, m.stats
        floor = _find(measurements, kind=KIND_FLOOR, protocol=s.protocol, concurrency=s.concurrency, rate=None,
                      batching=s.batching, generator=s.generator)
        x_floor = (f"{st.throughput_rps / floor.stats.throughput_rps:.2f}"
                   if s.kind in (KIND_PREDICT, KIND_REPLAY) and s.rate is None and floor and floor.stats.throughput_rps else "")
        ratio = (f"{st.p50_ms / in_process[s.batch_size]:.1f}"
                 if s.kind not in (KIND_IN_PROCESS, KIND_FLOOR) and s.batch_size in in_process and st.requests else "")
        generator = {GENERATOR_PYTHON: "py"}.get(s.generator, s.generator)
        table.add_row(
            names.get(s.kind, s.kind), s.protocol or "-", generator if s.kind in (KIND_PREDICT, KIND_FLOOR, KIND_REPLAY) else "",
            f"{s.rate:g}/s" if s.rate is not None else f"c={s.concurrency}", s.batch_label, s.batching,
            f"{st.throughput_rps:,.0f}", *(f"{v:.3f}" for v in (st.p50_ms, st.p99_ms)), str(st.errors),
            x_floor, ratio, f"{m.load_avg_1m:.1f}",
            style="red" if st.errors else None,
        )
    return table


def markdown_table(measurements: Sequence[Measurement]) -> str:
    """The measurements as a GitHub-flavoured markdown table (for docs/performance.md)."""
    header = ("| scenario | protocol | generator | load | batch | batching | ok | errors | req/s | p50 ms | p90 ms | p95 ms "
              "| p99 ms | load avg |")
    lines = [header, "|" + "|".join("---" for _ in range(14)) + "|"]
    for m in measurements:
        s, st = m.scenario, m.stats
        load = f"{s.rate:g}/s" if s.rate is not None else f"c={s.concurrency}"
        lines.append(
            f"| {s.kind} | {s.protocol or '-'} | {s.generator} | {load} | {s.batch_label} | {s.batching} | {st.requests} "
            f"| {st.errors} | "
            f"{st.throughput_rps:,.0f} | {st.p50_ms:.3f} | {st.p90_ms:.3f} | {st.p95_ms:.3f} | {st.p99_ms:.3f} | {m.load_avg_1m:.2f} |"
        )
    return "\n".join(lines)


def python_command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
