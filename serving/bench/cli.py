"""`tfstack bench`: load-test a TF-Serving-compatible server over REST and gRPC.

Either starts the embedded server itself (`--model-base-path`, free loopback ports, optionally
with batching) or targets a running one (`--rest URL --grpc TARGET`; loopback unless
`--allow-remote`). Load comes from wrk and h2load when installed (`--load-generator`). With
`--replay LOGS` the Predict load is the requests `tfstack serve` logged (their inputs and batch
sizes, in log order): over REST from wrk when installed, over gRPC from the Python generator
(h2load sends one request file). Writes bench.csv, bench.json, bench.md and
bench.png into `--output-dir`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

DEFAULT_CONCURRENCY = "1,4,16,64"
DEFAULT_BATCH_SIZES = "1,8"


def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 1,4,16. Received: {value!r}") from None
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter(f"expected integers >= 1. Received: {value!r}")
    return numbers


def _choice_list(choices: tuple[str, ...]):
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
        items = tuple(dict.fromkeys(part.strip().lower() for part in value.split(",") if part.strip()))
        if not items or any(item not in choices for item in items):
            raise click.BadParameter(f"expected a comma-separated subset of {','.join(choices)}. Received: {value!r}")
        return items

    return parse


def _version_dir(base_path: Path, version: int) -> Path | None:
    from tfstack.export import version_directories

    return version_directories(base_path).get(version)


@contextlib.contextmanager
def _server(options: dict[str, Any], batching: str, workdir: Path) -> Iterator[tuple[str | None, str | None]]:
    """Yield (rest_url, grpc_target): an embedded server started here, or the one given."""
    if options["rest"] or options["grpc"]:
        yield options["rest"], options["grpc"]
        return
    from tfstack.serving.testing._harness import EmbeddedBackend, ServeRequest, serve_models

    flags: list[str] = []
    if batching == "on":
        flags.append("--enable_batching=true")
        if options["batching_parameters_file"]:
            flags.append(f"--batching_parameters_file={Path(options['batching_parameters_file']).absolute()}")
    request = ServeRequest(models={options["model_name"]: Path(options["model_base_path"])}, flags=tuple(flags))
    with serve_models(EmbeddedBackend(), request, workdir=workdir) as endpoint:
        yield endpoint.rest_url, endpoint.grpc_target


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model-name", required=True, help="The served model to load-test.")
@click.option("--model-base-path", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Start the embedded server on this model repository (free loopback ports). Also the source of "
                   "assets.extra/sample_request.json and of the in-process baseline.")
@click.option("--rest", default=None, help="REST URL of a running server, e.g. http://127.0.0.1:8501.")
@click.option("--grpc", default=None, help="gRPC target of a running server, e.g. 127.0.0.1:8500.")
@click.option("--allow-remote", is_flag=True,
              help="Allow --rest/--grpc on another machine (default: loopback only, so load is never sent elsewhere "
                   "by mistake).")
@click.option("--load-generator", "load_generator", type=click.Choice(["auto", "c", "python"]), default="auto",
              show_default=True,
              help="Who sends the closed-loop load: c = wrk (REST) and h2load (gRPC), whose numbers are the server's; "
                   "python = tfstack's asyncio workers; auto = the C tool of each protocol when installed and a "
                   "--duration is used, else Python. With --replay, c and auto apply to REST (wrk); gRPC replay "
                   "always comes from Python.")
@click.option("--protocol", "protocols", default="grpc,rest", show_default=True, callback=_choice_list(("grpc", "rest")),
              help="Protocols to measure.")
@click.option("--concurrency", "concurrencies", default=DEFAULT_CONCURRENCY, show_default=True, callback=_int_list,
              help="Closed-loop concurrency sweep.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Also run open loop at this many requests/s (per protocol and batch size).")
@click.option("--batch-sizes", default=DEFAULT_BATCH_SIZES, show_default=True, callback=_int_list,
              help="Examples per Predict request.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              envvar="TFSTACK_BENCH_DURATION", show_envvar=True,
              help="Seconds per measurement (default 5 unless --requests is given).")
@click.option("--requests", type=click.IntRange(min=1), default=None, help="Requests per measurement instead of a duration.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Unmeasured requests per load-generator process before each measurement.")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Load-generator processes (default: the number of CPUs).")
@click.option("--signature-name", default="serving_default", show_default=True)
@click.option("--input", "input_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A REST predict body (JSON, columnar or row format) whose examples are sent; default: the model's "
                   "assets.extra/sample_request.json, else zeros shaped by the model metadata.")
@click.option("--replay", "replay_logs", multiple=True, metavar="LOGS",
              help="Send the Predict requests `tfstack serve` logged for --model-name (models.config logging_config): "
                   "a .tfrecord log, a directory of them or a filename_prefix; repeatable. Each request keeps its "
                   "logged inputs, batch size and signature; the load cycles through them in log order: REST from wrk "
                   "when installed (see --load-generator), gRPC from the Python generator (h2load sends one request "
                   "file). Not with --input, --batch-sizes or --signature-name; no baselines.")
@click.option("--enable_batching", "enable_batching", is_flag=True, help="Start the embedded server with --enable_batching=true.")
@click.option("--batching", "batching_modes", default=None, callback=lambda c, p, v: _choice_list(("off", "on"))(c, p, v) if v else None,
              help="Embedded server batching settings to compare, e.g. off,on (one server per setting).")
@click.option("--batching_parameters_file", "batching_parameters_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Passed to the embedded server when batching is on.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Measure the in-process signature, the official stub and the tfstack client.")
@click.option("--floor/--no-floor", default=True, show_default=True,
              help="Measure the empty request (model status: REST GET /v1/models/NAME, gRPC GetModelStatus) at each "
                   "concurrency.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Per-request timeout in seconds.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write bench.csv/json/md/png (default: bench-results/bench-<UTC time>).")
def bench(**options: Any) -> None:
    """Load-test a server over REST and gRPC; report throughput, p50/p90/p95/p99 latency and errors.

    \b
    Examples:
      tfstack bench --model-name digits --model-base-path models/digits --duration 5
      tfstack bench --model-name digits --model-base-path models/digits --concurrency 1,32 --batching off,on
      tfstack bench --model-name digits --rest http://127.0.0.1:8501 --grpc 127.0.0.1:8500 --rate 500
    """
    from rich.console import Console

    from tfstack.serving import bench as bench_api

    context = click.get_current_context()
    # Options that shape the one generated request; a replay sends logged requests instead.
    options["explicit"] = {name for name in ("input_path", "batch_sizes", "signature_name")
                           if context.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)}
    console = Console()
    if not console.is_terminal:
        # Logs and pipes get the whole table instead of 80-column folding.
        console = Console(width=120)
    try:
        plan = _plan(options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    for note in plan["notes"]:
        console.print(note, highlight=False)
    output_dir: Path = options["output_dir"] or Path("bench-results") / time.strftime("bench-%Y%m%dT%H%M%SZ", time.gmtime())
    output_dir.mkdir(parents=True, exist_ok=True)
    measurements: list[bench_api.Measurement] = []
    try:
        for batching in plan["batching_modes"]:
            with _server(options, batching, output_dir / "server") as (rest_url, grpc_target):
                measurements += _run_sweep(options, plan, batching, rest_url, grpc_target, console)
    except bench_api.BenchError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        from tfstack.serving.testing._harness import HarnessError

        if isinstance(exc, HarnessError):
            raise click.ClickException(str(exc)) from exc
        raise

    command = "tfstack bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else "tfstack bench"
    console.print(bench_api.results_table(measurements, title=f"tfstack bench: {options['model_name']}"))
    lines = bench_api.breakdown(measurements)
    if lines:
        console.print("[bold]Where a batch-1 Predict's time goes[/]")
        for line in lines:
            console.print(f"  {line}", highlight=False)
    for name, value in bench_api.baseline_ratios(measurements).items():
        if value == value:  # NaN when a term was not measured in this run
            console.print(f"  {name}: {value:.2f}", highlight=False)
    paths = {suffix: output_dir / f"bench.{suffix}" for suffix in ("csv", "json", "md", "png")}
    bench_api.write_csv(measurements, paths["csv"])
    bench_api.write_json(measurements, paths["json"], command=command, extra={"plan": plan["summary"]})
    paths["md"].write_text(bench_api.markdown_table(measurements) + "\n", encoding="utf-8")
    bench_api.write_chart(measurements, paths["png"])
    console.print("wrote " + ", ".join(str(p) for p in paths.values()), highlight=False)


def _plan(options: dict[str, Any]) -> dict[str, Any]:
    """Check the options before anything starts; ValueError names what was received."""
    from tfstack.serving import bench as bench_api

    if options["duration"] is not None and options["requests"] is not None:
        raise ValueError(f"Give --duration or --requests, not both. Received: --duration={options['duration']} "
                         f"--requests={options['requests']}")
    limits = bench_api.Limits(
        duration=None if options["requests"] is not None else (options["duration"] or 5.0),
        requests=options["requests"],
        warmup=options["warmup"],
        timeout=options["timeout"],
    )
    external = bool(options["rest"] or options["grpc"])
    if not external and options["model_base_path"] is None:
        raise ValueError("Give --model-base-path to start the embedded server, or --rest/--grpc to target a running one.")
    if options["model_base_path"] is not None and not options["model_base_path"].is_dir():
        raise ValueError(f"--model-base-path must be a directory of version directories. Received: {options['model_base_path']}")
    if options["rest"]:
        if not options["allow_remote"]:
            bench_api.require_loopback(options["rest"], what="--rest")
        if not options["rest"].startswith(("http://", "https://")):
            raise ValueError(f"--rest must be a URL like http://127.0.0.1:8501. Received: --rest={options['rest']!r}")
    if options["grpc"] and not options["allow_remote"]:
        bench_api.require_loopback(options["grpc"], what="--grpc")
    if external:
        missing = [p for p in options["protocols"] if not options[p]]
        if missing:
            raise ValueError(f"--protocol includes {','.join(missing)} but no --{missing[0]} address was given. "
                             f"Received: --rest={options['rest']!r} --grpc={options['grpc']!r}")
        if options["enable_batching"] or options["batching_modes"]:
            raise ValueError("--enable_batching/--batching start the embedded server; a running server's batching is its own.")
        batching_modes: tuple[str, ...] = ("server",)
    else:
        batching_modes = options["batching_modes"] or (("on",) if options["enable_batching"] else ("off",))
    processes = options["processes"] or os.cpu_count() or 1
    generators, notes = _generators(options)
    summary: dict[str, Any] = {
        "protocols": list(options["protocols"]), "concurrencies": list(options["concurrencies"]),
        "batch_sizes": list(options["batch_sizes"]), "rate": options["rate"], "batching": list(batching_modes),
        "limits": dataclasses.asdict(limits), "processes": processes, "generators": generators,
    }
    replay = None
    if options["replay_logs"]:
        replay = _replay(options, notes)
        summary["batch_sizes"] = "logged"
        summary["replay"] = replay.summary()
    # Fail on impossible sweeps here, before a server starts.
    bench_api.plan_scenarios(protocols=options["protocols"], concurrencies=options["concurrencies"],
                          batch_sizes=options["batch_sizes"], rate=options["rate"], generators=generators,
                          baselines=replay is None, replay=replay is not None)
    return {"limits": limits, "batching_modes": batching_modes, "processes": processes, "summary": summary,
            "generators": generators, "notes": notes, "replay": replay}


def _replay(options: dict[str, Any], notes: list[str]) -> Any:
    """Read --replay's logs (tfstack.export's reader: files, directories, prefixes; a torn last record is
    skipped with a warning) into the requests to send; ValueError for anything a user must fix."""
    from tfstack import export
    from tfstack.serving import bench as bench_api

    given = {"input_path": "--input", "batch_sizes": "--batch-sizes", "signature_name": "--signature-name"}
    clashing = [flag for name, flag in given.items() if name in options["explicit"]]
    if clashing:
        raise ValueError(f"--replay sends the logged requests with their own inputs, batch sizes and signatures; "
                         f"it does not combine with {', '.join(clashing)}. Received: --replay with {', '.join(clashing)}")
    logs = export.read_prediction_logs(list(options["replay_logs"]))
    replay = bench_api.build_replay(logs, model_name=options["model_name"])
    sizes = ", ".join(f"{count}x b={size}" for size, count in replay.batch_sizes.items())
    notes.append(f"Replaying {len(replay.requests):,} logged Predict requests of {options['model_name']} from "
                 f"{len(replay.files)} log file(s), in log order ({sizes}); batch sizes are the logged ones.")
    left_out = [f"{count:,} of model {name!r}" for name, count in replay.other_models.items()]
    left_out += [f"{count:,} {kind} records (not Predict)" for kind, count in replay.other_kinds.items()]
    if left_out:
        notes.append("Left out of the replay: " + ", ".join(left_out) + ".")
    if options["baselines"]:
        notes.append("No baselines with --replay: they send one fixed request.")
    return replay


def _generators(options: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """protocol -> load generator for the closed-loop runs, and lines to tell the user."""
    from tfstack.serving import bench as bench_api
    from tfstack.serving.bench import _native as _bench_native

    choice = options["load_generator"]
    if options["replay_logs"]:
        return _replay_generators(options)
    if choice == "python":
        return {p: bench_api.GENERATOR_PYTHON for p in options["protocols"]}, []
    if options["requests"] is not None:
        if choice == "c":
            raise ValueError(f"wrk and h2load run for a --duration, not a number of requests. Received: "
                             f"--load-generator c --requests {options['requests']}")
        return ({p: bench_api.GENERATOR_PYTHON for p in options["protocols"]},
                ["Load from the Python generator: wrk and h2load run for a --duration, not --requests."])
    generators, notes = {}, []
    for protocol in options["protocols"]:
        if _bench_native.find_tool(protocol) is not None:
            generators[protocol] = _bench_native.TOOLS[protocol]
        elif choice == "c":
            raise ValueError(f"--load-generator c: {_bench_native.missing_tool_message(protocol)}")
        else:
            generators[protocol] = bench_api.GENERATOR_PYTHON
            notes.append(f"{_bench_native.missing_tool_message(protocol)}. {protocol.upper() if protocol == 'rest' else 'gRPC'} "
                         "load comes from the Python generator, which shares the CPUs with the server.")
    return generators, notes


def _replay_generators(options: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """--replay: REST from wrk (it cycles through the logged bodies) when installed and asked for; gRPC always
    from the Python generator, because h2load sends one request file. With --load-generator c, gRPC falls
    back to Python with a note (refusing would make `c` unusable with the default --protocol grpc,rest),
    and a missing wrk is refused."""
    from tfstack.serving import bench as bench_api
    from tfstack.serving.bench import _native as _bench_native

    choice, protocols = options["load_generator"], options["protocols"]
    generators = {p: bench_api.GENERATOR_PYTHON for p in protocols}
    notes: list[str] = []
    if "rest" in protocols and choice != "python":
        if options["requests"] is not None:
            if choice == "c":
                raise ValueError(f"wrk runs for a --duration, not a number of requests. Received: "
                                 f"--load-generator c --replay --requests {options['requests']}")
            notes.append("REST replay load from the Python generator: wrk runs for a --duration, not --requests.")
        elif _bench_native.find_tool("rest") is not None:
            generators["rest"] = bench_api.GENERATOR_WRK
            notes.append("REST replay load from wrk: one connection per wrk thread, each cycling through the logged "
                         "bodies in log order from its own place in the log.")
        elif choice == "c":
            raise ValueError(f"--load-generator c --replay: {_bench_native.missing_tool_message('rest')}")
        else:
            notes.append(f"{_bench_native.missing_tool_message('rest')}. REST replay load comes from the Python "
                         "generator, which shares the CPUs with the server.")
    if "grpc" in protocols and choice != "python":
        notes.append("gRPC replay load from the Python generator: h2load sends one request file, a replay sends many"
                     + (" (--load-generator c applies to REST only with --replay)." if choice == "c" else "."))
    return generators, notes


def _run_sweep(options: dict[str, Any], plan: dict[str, Any], batching: str, rest_url: str | None,
               grpc_target: str | None, console: Any) -> list[Any]:
    from tfstack.client import ServingClient, ServingError
    from tfstack.serving import bench as bench_api

    model_name, signature_name = options["model_name"], options["signature_name"]
    if grpc_target:
        client = ServingClient.grpc(grpc_target)
    else:
        assert rest_url is not None  # the command line requires --grpc or --rest
        client = ServingClient.rest(rest_url)
    try:
        metadata = client.get_model_metadata(model_name)
    except ServingError as exc:
        raise bench_api.BenchError(f"Could not read the metadata of model {model_name!r}: {exc}") from exc
    finally:
        client.close()
    replay = plan["replay"]
    wanted = replay.signature_names if replay is not None else (signature_name,)
    missing = [name for name in wanted if name not in metadata.signatures]
    if missing:
        what = "the logged requests name" if replay is not None else "has no signature"
        raise bench_api.BenchError(f"Model {model_name!r} v{metadata.version} {what} {', '.join(map(repr, missing))}"
                                   f"{' (not served)' if replay is not None else ''}. It has: {sorted(metadata.signatures)}")
    version_path = _version_dir(options["model_base_path"], metadata.version) if options["model_base_path"] else None
    if replay is not None:
        return _run_scenarios(options, plan, batching, rest_url, grpc_target, console, metadata=metadata,
                              version_path=version_path, payloads={},
                              source=f"{len(replay.requests):,} logged requests")
    signature = metadata.signatures[signature_name]
    sample_path = options["input_path"] or (version_path / "assets.extra" / "sample_request.json" if version_path else None)
    sample_body = None
    if sample_path is not None and sample_path.is_file():
        try:
            sample_body = json.loads(sample_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise bench_api.BenchError(f"{sample_path} is not valid JSON: {exc}") from exc
    try:
        payloads = bench_api.build_payloads(model_name=model_name, signature_name=signature_name, signature=signature,
                                         sample_body=sample_body, batch_sizes=options["batch_sizes"])
    except (ValueError, TypeError) as exc:
        raise bench_api.BenchError(f"Cannot build requests from {sample_path or 'the model metadata'}: {exc}") from exc
    source = str(sample_path) if sample_body is not None else "synthesized from metadata"
    return _run_scenarios(options, plan, batching, rest_url, grpc_target, console, metadata=metadata,
                          version_path=version_path, payloads=payloads, source=source)


def _run_scenarios(options: dict[str, Any], plan: dict[str, Any], batching: str, rest_url: str | None,
                   grpc_target: str | None, console: Any, *, metadata: Any, version_path: Path | None,
                   payloads: dict[int, Any], source: str) -> list[Any]:
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from tfstack.serving import bench as bench_api

    model_name, replay = options["model_name"], plan["replay"]
    target = bench_api.Target(model_name=model_name, rest_url=rest_url, grpc_target=grpc_target,
                              signature_name=options["signature_name"], version_path=version_path)
    scenarios = bench_api.plan_scenarios(
        protocols=options["protocols"], concurrencies=options["concurrencies"], batch_sizes=options["batch_sizes"],
        rate=options["rate"], floor=options["floor"], baselines=options["baselines"] and replay is None,
        in_process=version_path is not None, batching=batching, generators=plan["generators"], replay=replay is not None,
    )
    limits = plan["limits"]
    console.print(f"[bold]{model_name}[/] v{metadata.version}, batching {batching}, inputs from {source}; "
                  f"rest={rest_url} grpc={grpc_target}; {len(scenarios)} measurements")
    measurements = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task(f"batching {batching}", total=len(scenarios))
        for scenario in scenarios:
            expected = bench_api.expected_requests(scenario, limits)
            # Without a known request count the bar tracks time (tenths of a second) instead.
            by_time = expected is None and limits.duration is not None
            task = progress.add_task(scenario.label, total=limits.duration * 10 if by_time else expected)

            def report(done: int, elapsed: float, task: Any = task, scenario: Any = scenario, by_time: bool = by_time) -> None:
                if by_time:
                    progress.update(task, completed=min(elapsed, limits.duration) * 10,
                                    description=f"{scenario.label}: {done:,} requests")
                else:
                    progress.update(task, completed=done)

            measurement = bench_api.run_scenario(
                scenario, target=target, payloads=payloads, limits=limits, processes=plan["processes"], on_progress=report,
                replay=replay.requests if replay is not None else (),
            )
            stats = measurement.stats
            progress.update(task, total=stats.requests + stats.errors, completed=stats.requests + stats.errors,
                            description=f"{scenario.label}: {stats.throughput_rps:,.0f} req/s p50 {stats.p50_ms:.2f} ms "
                                        f"p99 {stats.p99_ms:.2f} ms err {stats.errors} (load {measurement.load_avg_1m:.1f})")
            progress.advance(overall)
            measurements.append(measurement)
    return measurements
