"""`tfstack bench`: load generation, statistics and reports for REST, gRPC and in-process inference.

Four steps, one module each: `_plan` (scenarios, limits, targets, payloads), `_load` (worker
processes or wrk/h2load through `_native`, one Measurement per scenario), `_stats` (percentiles,
summaries) and `_report` (ratios, breakdown, CSV, JSON, chart, tables); `_cli` is the command.
"""

from tfstack.serving.bench._load import Measurement, expected_requests, run_scenario
from tfstack.serving.bench._plan import (
    GENERATOR_H2LOAD,
    GENERATOR_PYTHON,
    GENERATOR_WRK,
    GENERATORS,
    KIND_FLOOR,
    KIND_IN_PROCESS,
    KIND_OFFICIAL_STUB,
    KIND_PREDICT,
    KIND_TFSTACK_CLIENT,
    KINDS,
    PROTOCOLS,
    BenchError,
    Limits,
    Payload,
    Scenario,
    Target,
    build_payloads,
    plan_scenarios,
    require_loopback,
)
from tfstack.serving.bench._report import (
    baseline_ratios,
    breakdown,
    machine_info,
    markdown_table,
    python_command,
    results_table,
    write_chart,
    write_csv,
    write_json,
)
from tfstack.serving.bench._stats import PERCENTILES, LatencyStats, percentile, summarize

__all__ = [
    "GENERATORS",
    "GENERATOR_H2LOAD",
    "GENERATOR_PYTHON",
    "GENERATOR_WRK",
    "KINDS",
    "KIND_FLOOR",
    "KIND_IN_PROCESS",
    "KIND_OFFICIAL_STUB",
    "KIND_PREDICT",
    "KIND_TFSTACK_CLIENT",
    "PERCENTILES",
    "PROTOCOLS",
    "BenchError",
    "LatencyStats",
    "Limits",
    "Measurement",
    "Payload",
    "Scenario",
    "Target",
    "baseline_ratios",
    "breakdown",
    "build_payloads",
    "expected_requests",
    "machine_info",
    "markdown_table",
    "percentile",
    "plan_scenarios",
    "python_command",
    "require_loopback",
    "results_table",
    "run_scenario",
    "summarize",
    "write_chart",
    "write_csv",
    "write_json",
]
