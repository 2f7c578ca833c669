"""Resource limits and shutdown of a real `tfstack serve`, measured (issue 17; tests assert behaviour only).

1. latency of normal REST clients (Predict, one fresh connection per request, and kept-alive)
   without and with 500 slowloris sockets held open and trickling header bytes;
2. RSS growth while a client announces a 1 GiB body and pushes 256 MiB of it;
3. RSS after large valid requests (about 20 MB of JSON each), right after and a second later;
4. SIGTERM under load (4 REST + 4 gRPC clients in a loop): time until a new connection to each
   port is refused, requests sent before SIGTERM that failed, and the exit code.

Usage:
  .venv/bin/python benchmarks/rest_limits.py [--requests 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fuzz import MODEL, valid_predict_bytes  # noqa: E402
from tests.support.models import build_half_plus  # noqa: E402
from tests.support.server import start_server  # noqa: E402
from tests.support.slow_clients import SlowClients, raise_fd_limit, rss_bytes  # noqa: E402

PREDICT = f"/v1/models/{MODEL}:predict"
BODY = b'{"instances": [2.0]}'


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.5) * 1e3, 2), "p99_ms": round(pick(0.99) * 1e3, 2),
            "max_ms": round(ordered[-1] * 1e3, 2), "mean_ms": round(statistics.fmean(ordered) * 1e3, 2)}


def _latency(port: int, requests: int, *, keep_alive: bool) -> dict[str, float]:
    samples = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(requests):
        if not keep_alive:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        connection.request("POST", PREDICT, body=BODY)
        response = connection.getresponse()
        response.read()
        samples.append(time.perf_counter() - started)
        assert response.status == 200
        if not keep_alive:
            connection.close()
    return _percentiles(samples)


def _slowloris(port: int, requests: int) -> dict:
    result = {"fresh_connection": {"idle": _latency(port, requests, keep_alive=False)},
              "kept_alive": {"idle": _latency(port, requests, keep_alive=True)}}
    slow = SlowClients("127.0.0.1", port, count=500)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            slow.trickle()
            stop.wait(0.5)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        result["fresh_connection"]["500_slowloris"] = _latency(port, requests, keep_alive=False)
        result["kept_alive"]["500_slowloris"] = _latency(port, requests, keep_alive=True)
        result["slowloris_still_open_after_measuring"] = slow.open_count()
    finally:
        stop.set()
        trickler.join()
    started = time.monotonic()
    while slow.open_count() and time.monotonic() - started < 60:
        slow.trickle()
        time.sleep(0.2)
    result["slowloris_open_after_header_timeout"] = slow.open_count()
    result["seconds_until_all_closed"] = round(time.monotonic() - started, 1)
    slow.close()
    return result


def _announced_gib(port: int, pid: int) -> dict:
    before = rss_bytes(pid)
    peak = before
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {2**30}\r\n\r\n".encode())
    sent = 0
    try:
        chunk = b"0" * (1 << 20)
        for _ in range(256):
            sock.sendall(chunk)
            sent += len(chunk)
            peak = max(peak, rss_bytes(pid))
    except OSError:
        pass
    reply = sock.recv(4096)
    sock.close()
    return {"status": reply.split(b" ", 2)[1].decode() if reply else "closed", "body_mib_sent": sent >> 20,
            "rss_growth_mib": round((peak - before) / 2**20, 1)}


def _large_requests(port: int, pid: int) -> dict:
    body = json.dumps({"instances": [1.5] * 4_000_000}).encode()  # about 20 MB
    before = rss_bytes(pid)
    peak = before
    for _ in range(5):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        connection.request("POST", PREDICT, body=body)
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200, response.status
        peak = max(peak, rss_bytes(pid))
    right_after = rss_bytes(pid)
    time.sleep(1.0)  # the trim runs on a worker thread after the answer
    return {"body_mb": round(len(body) / 1e6, 1), "rss_before_mib": round(before / 2**20),
            "rss_peak_mib": round(peak / 2**20), "rss_right_after_mib": round(right_after / 2**20),
            "rss_1s_after_mib": round(rss_bytes(pid) / 2**20)}


def _sigterm_under_load(server) -> dict:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401

    request = valid_predict_bytes()
    stop, sigterm = threading.Event(), threading.Event()
    lost: list[str] = []
    served = [0]

    def rest_worker():
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
        while not stop.is_set():
            before = not sigterm.is_set()
            try:
                connection.request("POST", PREDICT, body=BODY)
                response = connection.getresponse()
                response.read()
                served[0] += 1
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except ConnectionRefusedError:
                connection.close()
                time.sleep(0.01)
            except Exception as exc:  # noqa: BLE001
                if before:
                    lost.append(f"REST {exc!r}")
                connection.close()
                time.sleep(0.01)

    def grpc_worker():
        channel = grpc.insecure_channel(server.grpc_target)
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        while not stop.is_set():
            before = not sigterm.is_set()
            try:
                call(request, timeout=60)
                served[0] += 1
            except grpc.RpcError as exc:
                if before:
                    lost.append(f"gRPC {exc.code().name}")
                time.sleep(0.01)
        channel.close()

    def refused(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True

    workers = [threading.Thread(target=rest_worker) for _ in range(4)] + [threading.Thread(target=grpc_worker) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # load for a while before the signal
    sigterm.set()
    sent_at = time.monotonic()
    server.process.send_signal(15)
    refused_after = {}
    while len(refused_after) < 2 and time.monotonic() - sent_at < 30:
        for name, port in (("rest", server.rest_port), ("grpc", server.grpc_port)):
            if name not in refused_after and refused(port):
                refused_after[name] = round((time.monotonic() - sent_at) * 1e3, 1)
        time.sleep(0.002)
    code = server.process.wait(60)
    exited_after = round(time.monotonic() - sent_at, 2)
    stop.set()
    for worker in workers:
        worker.join(60)
    return {"refused_after_ms": refused_after, "exit_code": code, "exited_after_s": exited_after,
            "requests_served": served[0], "sent_before_sigterm_and_failed": len(lost), "failures": lost[:10]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    raise_fd_limit(4096)
    work = Path(tempfile.mkdtemp(prefix="tfstack-limits-"))
    build_half_plus(work / "models" / MODEL / "123")
    base = work / "models" / MODEL
    result = {}
    with start_server(work / "a", "--rest_api_header_timeout_in_ms=10000", model_name=MODEL, model_base_path=base) as server:
        result["slowloris"] = _slowloris(server.rest_port, args.requests)
        result["announced_1_gib"] = _announced_gib(server.rest_port, server.process.pid)
        result["large_requests"] = _large_requests(server.rest_port, server.process.pid)
    with start_server(work / "b", model_name=MODEL, model_base_path=base, expected_exit_code=None) as server:
        result["sigterm_under_load"] = _sigterm_under_load(server)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
