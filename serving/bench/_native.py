"""C load generators for `tfstack bench`: wrk for REST, h2load (nghttp2) for gRPC.

The Python load generator spends more CPU per request than the server's own request path, and on
a small machine it shares the cores with the server, so its numbers are partly its own. wrk and
h2load send a fixed, pre-built request from one native thread each, which leaves the server
nearly all the CPU: their numbers are the server's.

- REST: `wrk` with a generated Lua script that sets the method, body and headers and, when the
  run ends, prints the request count, error counts and latency percentiles from wrk's own
  histogram as one JSON line.
- REST replay (`--replay`): wrk with a script whose `request()` sends the logged bodies in log
  order, read one at a time from a records file (`write_replay_records`: per body a
  "<length> <batch size>" line, then the body's bytes), so any bytes pass and no body is inlined
  into the script. Each connection runs on its own wrk thread (own Lua state, own place in the
  log), which makes the accounting exact: a connection has one request in flight, so its
  `response()` knows which body it answers and adds that body's batch size to the thread's
  examples; `done()` sums the threads' counts into the JSON line.
- gRPC: `h2load` POSTs a pre-built request file (the serialized message in gRPC's 5-byte
  length-prefixed frame) with `content-type: application/grpc` and `te: trailers`, one stream per
  connection, and writes every request's latency to a log file (h2load prints only min/mean/max).
  h2load does not read gRPC trailers, so a failed RPC (HTTP 200 with `grpc-status` != 0 and no
  message) is recognised by its size: the bench knows how many response bytes a good answer has.

Both are closed loop: `concurrency` connections, each sending its next request when the answer
arrives, for a duration (whole seconds for wrk). Before each run the parent sends `warmup`
requests itself and checks that they succeed, so a wrong request fails with the server's error
text instead of as a run of errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np

from tfstack.serving._errors import ServerError

__all__ = [
    "TOOLS",
    "NativeRequest",
    "NativeResult",
    "NativeToolError",
    "find_tool",
    "missing_tool_message",
    "grpc_frame",
    "run_wrk",
    "run_wrk_replay",
    "run_h2load",
    "wrk_script",
    "wrk_replay_script",
    "write_replay_records",
    "parse_wrk_output",
    "parse_h2load_output",
]

# protocol -> the C load generator that drives it
TOOLS: Mapping[str, str] = {"rest": "wrk", "grpc": "h2load"}
# tool -> the Debian/Ubuntu package that installs it
PACKAGES: Mapping[str, str] = {"wrk": "wrk", "h2load": "nghttp2-client"}
_WRK_MARKER = "TFSTACK_WRK "
_PERCENTILES = (50, 90, 95, 99)


class NativeToolError(ServerError):
    """A C load generator is missing, failed, or printed something the bench cannot read."""


def find_tool(protocol: str) -> str | None:
    """The path of the C load generator for `protocol` ("rest" or "grpc"), or None when not installed."""
    if protocol not in TOOLS:
        raise ValueError(f"No C load generator for protocol {protocol!r}. Expected one of {sorted(TOOLS)}.")
    return shutil.which(TOOLS[protocol])


def missing_tool_message(protocol: str) -> str:
    """One line naming the missing tool and the package that installs it."""
    tool = TOOLS[protocol]
    return (f"{tool} (the C load generator for {'REST' if protocol == 'rest' else 'gRPC'}) is not installed: "
            f"not found on PATH. On Debian/Ubuntu: apt-get install {PACKAGES[tool]}")


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: flag 0 (uncompressed), 4-byte big-endian length, the message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclasses.dataclass(frozen=True, kw_only=True)
class NativeRequest:
    """The one request a C load generator repeats.

    Attributes:
        url: full URL, e.g. http://127.0.0.1:8501/v1/models/digits:predict or
            http://127.0.0.1:8500/tensorflow.serving.PredictionService/Predict.
        method: "GET" or "POST".
        body: the request body (for gRPC: the framed message, see `grpc_frame`).
        headers: extra request headers.
        response_bytes: gRPC only: the DATA bytes of one successful answer (frame included), so
            failed RPCs can be counted; None for REST (wrk sees the HTTP status).
    """

    url: str
    method: str = "GET"
    body: bytes = b""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    response_bytes: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class NativeResult:
    """What one C load generator run measured. Latencies in milliseconds."""

    requests: int  # successful
    errors: int
    elapsed_s: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    command: tuple[str, ...]
    examples: int | None = None  # replay: examples in the successfully answered requests

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


# ------------------------------------------------------------------------------------------ wrk


def _lua_string(text: str) -> str:
    """`text` as a Lua long-bracket literal (no escapes needed)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _wrk_done(extra_fields: str = "", extra_values: str = "", prelude: str = "") -> str:
    """wrk's `done` hook: print the merged statistics (and `extra_fields`, computed by `prelude`) as
    one JSON line after the marker."""
    percentiles = ", ".join(f'"p{p}_us":%d' for p in _PERCENTILES)
    values = ", ".join(f"latency:percentile({p})" for p in _PERCENTILES)
    return f"""done = function(summary, latency, requests)
{prelude}  local e = summary.errors
  io.write(string.format('{_WRK_MARKER}{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"mean_us":%f,"max_us":%d,{percentiles}{extra_fields}}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, {values}{extra_values}))
end
"""


def _wrk_headers(request: NativeRequest) -> str:
    return "\n".join(f"  wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in request.headers.items())


def wrk_script(request: NativeRequest, body_path: Path) -> str:
    """The Lua script wrk runs: set the request, report percentiles as one JSON line at the end.

    The body is read from `body_path` (bytes, no quoting issues); `done` runs once with every
    thread's statistics merged. wrk's latencies are in microseconds.
    """
    return f"""-- generated by tfstack bench
init = function(args)
  wrk.method = {_lua_string(request.method)}
  local source = io.open({_lua_string(str(body_path))}, "rb")
  local body = source:read("*a")
  source:close()
  if #body > 0 then wrk.body = body end
{_wrk_headers(request)}
end

""" + _wrk_done()


def write_replay_records(path: Path, bodies: Sequence[tuple[bytes, int]]) -> list[int]:
    """Write (body, batch size) pairs as the records `wrk_replay_script` reads; return each record's byte offset.

    A record is the ASCII line "<body length> <batch size>\\n" followed by the body's bytes, so a
    body may hold any bytes (newlines, NULs, invalid UTF-8) and is read back by its length.
    """
    if not bodies:
        raise ValueError("Expected at least one body to replay. Received: no bodies")
    offsets = []
    position = 0
    with open(path, "wb") as sink:
        for body, batch_size in bodies:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
                raise ValueError(f"Expected a batch size (an int >= 0) with each body. Received: {batch_size!r}")
            header = f"{len(body)} {batch_size}\n".encode("ascii")
            offsets.append(position)
            sink.write(header)
            sink.write(body)
            position += len(header) + len(body)
    return offsets


def replay_starts(offsets: Sequence[int], connections: int) -> list[int]:
    """The byte offset where each wrk connection (thread) starts in the records: connection k of C at
    request k * n // C, so connections spread over the log as the Python generator's workers do."""
    return [offsets[k * len(offsets) // connections] for k in range(connections)]


def wrk_replay_script(request: NativeRequest, records_path: Path, starts: Sequence[int]) -> str:
    """The Lua script for replay: each wrk thread (one connection) sends the records in log order from
    its own start, wrapping around at the end, and counts the examples of the requests answered.

    wrk calls `setup(thread)` once per thread in the main Lua state (thread k gets `starts[k]`), then
    `init` in the thread's own state; `request()` reads the next record; `response()` runs when
    the connection's one request in flight is answered, so `current` is that request's batch
    size. wrk counts status >= 400 as errors, and so does `response()`, so `examples` covers exactly
    the requests wrk counts as successful. `done()` reads each thread's counters with `thread:get`.

    wrk calls the first thread's `request()` once before the run to check the request it builds;
    that thread then rewinds to its start so the run begins there, as every other thread does.
    """
    start_list = ", ".join(str(int(offset)) for offset in starts)
    return f"""-- generated by tfstack bench (replay)
local starts = {{ {start_list} }}
local threads = {{}}

setup = function(thread)
  table.insert(threads, thread)
  thread:set("start", starts[#threads])
  thread:set("checked_by_wrk", #threads == 1)
end

init = function(args)
  wrk.method = {_lua_string(request.method)}
{_wrk_headers(request)}
  source = assert(io.open({_lua_string(str(records_path))}, "rb"))
  source:seek("set", start)
  current, examples = 0, 0
end

local function next_record()
  local header = source:read("*l")
  if header == nil then
    source:seek("set", 0)
    header = source:read("*l")
  end
  local length, batch = string.match(header, "^(%d+) (%d+)$")
  local body = source:read(tonumber(length)) or ""
  return body, tonumber(batch)
end

request = function()
  local body, batch = next_record()
  current = batch
  if checked_by_wrk then
    checked_by_wrk = false
    source:seek("set", start)
  end
  return wrk.format(nil, nil, nil, body)
end

response = function(status, headers, body)
  if status < 400 then
    examples = examples + current
  end
end

""" + _wrk_done(',"examples":%d', ", examples", prelude=(
        "  local examples = 0\n"
        "  for _, thread in ipairs(threads) do examples = examples + thread:get(\"examples\") end\n"))


def parse_wrk_output(stdout: str, command: tuple[str, ...] = ()) -> NativeResult:
    """Read the JSON line the script's `done` printed.

    wrk counts every answer in `requests` (HTTP errors included, as `status` errors) and socket
    errors separately; its latency percentiles cover every answer.
    """
    line = next((line for line in stdout.splitlines() if line.startswith(_WRK_MARKER)), None)
    if line is None:
        raise NativeToolError(f"wrk printed no summary. Its output was: {stdout[-500:]!r}")
    data = json.loads(line[len(_WRK_MARKER):])
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    ok = data["requests"] - data["status"]
    answered = data["requests"] > 0
    return NativeResult(
        requests=ok,
        errors=data["status"] + socket_errors,
        elapsed_s=data["duration_us"] / 1e6,
        mean_ms=data["mean_us"] / 1e3 if answered else math.nan,
        max_ms=data["max_us"] / 1e3 if answered else math.nan,
        command=command,
        examples=data.get("examples"),
        **{f"p{p}_ms": data[f"p{p}_us"] / 1e3 if answered else math.nan for p in _PERCENTILES},
    )


def _require_tool(protocol: str) -> str:
    """The load generator's path for `protocol`; NativeToolError naming the package when it is missing."""
    tool = find_tool(protocol)
    if tool is None:
        raise NativeToolError(missing_tool_message(protocol))
    return tool


def run_wrk(request: NativeRequest, *, concurrency: int, duration: float, timeout: float,
            workdir: Path | None = None) -> NativeResult:
    """Closed-loop REST load from wrk: `concurrency` connections on one thread for `duration` s.

    wrk takes whole seconds: the duration is rounded up to at least 1 s.

    Raises:
        NativeToolError: wrk is not installed, failed, or printed no summary.
    """
    tool = _require_tool("rest")
    with _workdir(workdir) as directory:
        body_path = directory / "wrk-body.bin"
        body_path.write_bytes(request.body)
        script_path = directory / "wrk-script.lua"
        script_path.write_text(wrk_script(request, body_path), encoding="utf-8")
        command = (tool, "--threads", "1", "--connections", str(concurrency), "--duration", f"{max(1, math.ceil(duration))}s",
                   "--timeout", f"{max(1, math.ceil(timeout))}s", "--script", str(script_path), request.url)
        completed = _run(command, limit=duration + timeout + 30)
        return parse_wrk_output(completed.stdout, command)


def run_wrk_replay(request: NativeRequest, bodies: Sequence[tuple[bytes, int]], *, concurrency: int, duration: float,
                   timeout: float, workdir: Path | None = None) -> NativeResult:
    """Closed-loop REST replay from wrk: `concurrency` connections, each on its own wrk thread, sending
    `bodies` ((body, batch size) in log order) from its own place in the log, for `duration` s.

    `request` gives the URL, method and headers (its body is ignored). The result's `examples`
    counts the examples of the successfully answered requests.

    Raises:
        NativeToolError: wrk is not installed, failed, or printed no summary.
    """
    tool = _require_tool("rest")
    with _workdir(workdir) as directory:
        records_path = directory / "wrk-replay-records.bin"
        offsets = write_replay_records(records_path, bodies)
        script_path = directory / "wrk-replay.lua"
        script_path.write_text(wrk_replay_script(request, records_path, replay_starts(offsets, concurrency)),
                               encoding="utf-8")
        command = (tool, "--threads", str(concurrency), "--connections", str(concurrency),
                   "--duration", f"{max(1, math.ceil(duration))}s", "--timeout", f"{max(1, math.ceil(timeout))}s",
                   "--script", str(script_path), request.url)
        completed = _run(command, limit=duration + timeout + 30)
        return parse_wrk_output(completed.stdout, command)


# ---------------------------------------------------------------------------------------- h2load


_FINISHED = re.compile(r"finished in ([0-9.]+)(us|ms|s)\b")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                       r"(\d+) timeout")
_TRAFFIC_DATA = re.compile(r"traffic: .*?, [0-9.]+\w* \((\d+)\) data")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def parse_h2load_output(stdout: str, log_lines: list[str], *, response_bytes: int | None,
                        command: tuple[str, ...] = ()) -> NativeResult:
    """h2load's summary (duration, counts, DATA bytes) and per-request log (status, microseconds).

    A gRPC failure is HTTP 200 without a message: when `response_bytes` is known, the number of
    good answers is at most the DATA bytes received divided by it.
    """
    finished = _FINISHED.search(stdout)
    counts = _REQUESTS.search(stdout)
    if finished is None or counts is None:
        raise NativeToolError(f"h2load printed no summary. Its output was: {stdout[-500:]!r}")
    elapsed = float(finished.group(1)) * _UNITS[finished.group(2)]
    latencies_us = []
    failed = 0
    for line in log_lines:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if parts[1] == "200":
            latencies_us.append(int(parts[2]))
        else:
            failed += 1
    ok = len(latencies_us)
    if response_bytes:
        traffic = _TRAFFIC_DATA.search(stdout)
        if traffic is not None:
            whole = int(traffic.group(1)) // response_bytes
            if whole < ok:  # some 200s carried no message: gRPC errors
                failed += ok - whole
                ok = whole
    ms = np.asarray(latencies_us, dtype=np.float64) / 1e3
    p: dict[str, Any] = {f"p{q}_ms": float(np.percentile(ms, q)) if ms.size else math.nan for q in _PERCENTILES}
    return NativeResult(
        requests=ok,
        errors=failed,
        elapsed_s=elapsed,
        mean_ms=float(ms.mean()) if ms.size else math.nan,
        max_ms=float(ms.max()) if ms.size else math.nan,
        command=command,
        **p,
    )


def run_h2load(request: NativeRequest, *, concurrency: int, duration: float, timeout: float,
               workdir: Path | None = None) -> NativeResult:
    """Closed-loop gRPC (HTTP/2) load from h2load: `concurrency` connections, one stream each.

    Raises:
        NativeToolError: h2load is not installed, failed, or printed no summary.
    """
    tool = _require_tool("grpc")
    with _workdir(workdir) as directory:
        body_path = directory / "h2load-body.bin"
        body_path.write_bytes(request.body)
        log_path = directory / "h2load-log.tsv"
        log_path.unlink(missing_ok=True)
        command = [tool, "--threads", "1", "--clients", str(concurrency), "--max-concurrent-streams", "1",
                   "--duration", f"{max(1, round(duration * 1000))}ms", "--log-file", str(log_path)]
        if request.method == "POST":
            command += ["--data", str(body_path)]
        for key, value in request.headers.items():
            command += ["--header", f"{key}: {value}"]
        command.append(request.url)
        completed = _run(tuple(command), limit=duration + timeout + 30)
        lines = log_path.read_text(encoding="utf-8").splitlines() if log_path.exists() else []
        return parse_h2load_output(completed.stdout, lines, response_bytes=request.response_bytes, command=tuple(command))


# ------------------------------------------------------------------------------ requests


PREDICT_PATH = "/tensorflow.serving.PredictionService/Predict"
MODEL_STATUS_PATH = "/tensorflow.serving.ModelService/GetModelStatus"
GRPC_HEADERS: Mapping[str, str] = {"content-type": "application/grpc", "te": "trailers"}
JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}


def rest_predict_request(rest_url: str, model_name: str, body: bytes) -> NativeRequest:
    """POST /v1/models/<name>:predict with a JSON body."""
    return NativeRequest(url=f"{rest_url.rstrip('/')}/v1/models/{model_name}:predict", method="POST", body=body,
                         headers=JSON_HEADERS)


def rest_status_request(rest_url: str, model_name: str) -> NativeRequest:
    """GET /v1/models/<name>: the empty request (model status, no tensor work)."""
    return NativeRequest(url=f"{rest_url.rstrip('/')}/v1/models/{model_name}")


def _grpc_url(grpc_target: str, path: str) -> str:
    return f"http://{grpc_target}{path}"


def grpc_predict_request(grpc_target: str, predict_request: bytes) -> NativeRequest:
    """PredictionService/Predict with a serialized PredictRequest."""
    return NativeRequest(url=_grpc_url(grpc_target, PREDICT_PATH), method="POST", body=grpc_frame(predict_request),
                         headers=GRPC_HEADERS)


def grpc_status_request(grpc_target: str, model_name: str) -> NativeRequest:
    """ModelService/GetModelStatus: the empty request over gRPC (no tensor work)."""
    from tfstack.client import wire as pb

    message = pb.GetModelStatusRequest()
    message.model_spec.name = model_name
    return NativeRequest(url=_grpc_url(grpc_target, MODEL_STATUS_PATH), method="POST",
                         body=grpc_frame(message.SerializeToString()), headers=GRPC_HEADERS)


def check_and_warm_up(request: NativeRequest, *, count: int, timeout: float, bodies: Sequence[bytes] = ()) -> NativeRequest:
    """Send `request` `count` times (at least once) from Python and check every answer.

    With `bodies` (REST replay), the i-th send carries `bodies[i % len(bodies)]` instead of the
    request's body, so the first logged requests are checked before wrk cycles through them.

    Returns the request with `response_bytes` set for gRPC (the size of a good answer).

    Raises:
        NativeToolError: the server refused the request, with its status and text.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(request.url)
    if request.headers.get("content-type") == "application/grpc":
        import grpc

        with grpc.insecure_channel(parts.netloc) as channel:
            method = channel.unary_unary(parts.path)
            answer = b""
            for _ in range(max(1, count)):
                try:
                    answer = method(request.body[5:], timeout=timeout)
                except grpc.RpcError as exc:
                    raise NativeToolError(f"{parts.path} was refused: {exc.code().name}: {exc.details()}") from exc
        return dataclasses.replace(request, response_bytes=5 + len(answer))
    import http.client

    assert parts.hostname is not None  # built from a validated http://host:port URL
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        for index in range(max(1, count)):
            body = bodies[index % len(bodies)] if bodies else request.body
            connection.request(request.method, parts.path, body=body or None, headers=dict(request.headers))
            response = connection.getresponse()
            text = response.read()
            if response.status != 200:
                which = f" (logged request {index % len(bodies) + 1} of {len(bodies)})" if bodies else ""
                raise NativeToolError(f"{request.method} {parts.path}{which} answered HTTP {response.status}: "
                                      f"{text[:300].decode('utf-8', 'replace')}")
    except OSError as exc:
        raise NativeToolError(f"{request.method} {request.url} failed: {exc}") from exc
    finally:
        connection.close()
    return request


# ------------------------------------------------------------------------------------- helpers


class _workdir:
    """`path` if given (kept), else a temporary directory removed afterwards."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._temporary: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if self._path is not None:
            self._path.mkdir(parents=True, exist_ok=True)
            return self._path
        self._temporary = tempfile.TemporaryDirectory(prefix="tfstack-bench-")
        return Path(self._temporary.name)

    def __exit__(self, *exc_info: object) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()


def _run(command: tuple[str, ...], *, limit: float) -> subprocess.CompletedProcess:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=limit,
                                   env={**os.environ, "LC_ALL": "C"})
    except subprocess.TimeoutExpired as exc:
        raise NativeToolError(f"{Path(command[0]).name} did not finish within {limit:.0f} s: {' '.join(command)}") from exc
    except OSError as exc:
        raise NativeToolError(f"Could not run {command[0]}: {exc}") from exc
    if completed.returncode != 0:
        raise NativeToolError(f"{Path(command[0]).name} failed (exit {completed.returncode}): "
                              f"{(completed.stderr or completed.stdout).strip()[-500:]}")
    return completed
