"""Bounded REST resources on a real `tfstack serve`: body cap, header and idle timeouts, connection cap.

TF Serving's libevent front end sets none of these (http_server.cc), so these are tfstack's own
flags (docs/embedded-server.md, Security). The latency of normal clients while slow ones are
held is measured in benchmarks/rest_limits.py, not asserted here.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.integration.conftest import MODEL_NAME
from tests.integration.test_rest import http
from tests.support.server import start_server
from tests.support.slow_clients import SlowClients, raise_fd_limit, rss_bytes

pytestmark = pytest.mark.slow

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
GOOD = b'{"instances": [2.0]}'
DEFAULT_CAP = 1024  # --rest_api_max_connections


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, half_plus_two_base):
    raise_fd_limit(4096)
    workdir = tmp_path_factory.mktemp("limits")
    with start_server(workdir, "--rest_api_header_timeout_in_ms=2000", "--rest_api_idle_timeout_in_ms=2000",
                      model_name=MODEL_NAME, model_base_path=half_plus_two_base) as server:
        yield server


def _read_reply(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), json.loads(body)


def test_a_1_gib_announced_body_gets_413_without_being_buffered(limited_server):
    pid = limited_server.process.pid
    before = rss_bytes(pid)
    sock = socket.create_connection(("127.0.0.1", limited_server.rest_port), timeout=30)
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {2**30}\r\n\r\n".encode())
    stop = threading.Event()

    def send_body():  # keep pushing body bytes, as a client that ignores the early answer would
        chunk = b"0" * (1 << 20)
        try:
            for _ in range(512):
                if stop.is_set():
                    return
                sock.sendall(chunk)
        except OSError:
            return

    sender = threading.Thread(target=send_body)
    sender.start()
    try:
        status, body = _read_reply(sock)
    finally:
        stop.set()
        sender.join()
        sock.close()
    assert status == 413
    assert body["error"].startswith("Request body too large: 1073741824 bytes announced (Content-Length)")
    assert "--rest_api_max_body_bytes" in body["error"]
    assert rss_bytes(pid) - before < 50 * 2**20
    assert http(limited_server.rest_port, "POST", PREDICT, GOOD).json() == {"predictions": [3.0]}


def test_a_chunked_body_is_cut_off_at_the_cap(limited_server):
    sock = socket.create_connection(("127.0.0.1", limited_server.rest_port), timeout=30)
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    piece = b"0" * (1 << 20)
    try:
        for _ in range(80):  # 80 MiB, past the 64 MiB default
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    except OSError:
        pass  # the server may close once it has answered
    status, body = _read_reply(sock)
    sock.close()
    assert status == 413 and "more than 67108864 bytes sent" in body["error"]


def test_slow_and_idle_sockets_are_closed_while_normal_clients_are_served(limited_server):
    port = limited_server.rest_port
    slow = SlowClients("127.0.0.1", port, count=500)
    idle = SlowClients("127.0.0.1", port, count=100, send_nothing=True)
    try:
        answers = [http(port, "POST", PREDICT, GOOD).json() for _ in range(20)]
        assert answers == [{"predictions": [3.0]}] * 20
        assert slow.wait_closed(deadline_seconds=60) == 0
        assert idle.wait_closed(deadline_seconds=60, trickle_every=0.2) == 0
    finally:
        slow.close()
        idle.close()
    assert http(port, "POST", PREDICT, GOOD).json() == {"predictions": [3.0]}


def test_an_idle_kept_alive_connection_is_closed(limited_server):
    sock = socket.create_connection(("127.0.0.1", limited_server.rest_port), timeout=30)
    request = f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(GOOD)}\r\n\r\n".encode() + GOOD
    sock.sendall(request)
    assert _read_reply(sock) == (200, {"predictions": [3.0]})
    sock.sendall(request)  # still alive for a second request
    assert _read_reply(sock) == (200, {"predictions": [3.0]})
    sock.settimeout(60)
    assert sock.recv(1) == b""  # then closed by the idle timeout, not by us
    sock.close()


def test_connections_beyond_the_default_cap_get_a_clear_503(server):
    # The shared server runs with the defaults: 1024 connections, 10 s to send headers.
    raise_fd_limit(4096)
    port = server.rest_port
    held = SlowClients("127.0.0.1", port, count=DEFAULT_CAP, send_nothing=True)
    try:
        # The kernel completes handshakes before the server accepts them: poll until it has.
        deadline = time.monotonic() + 30
        while (reply := http(port, "POST", PREDICT, GOOD)).status == 200:
            assert time.monotonic() < deadline, f"connection {DEFAULT_CAP + 1} was never refused"
            time.sleep(0.05)
        assert reply.status == 503
        error = reply.json()["error"]
        assert "Too many connections" in error and "--rest_api_max_connections" in error
    finally:
        held.close()
    server.wait_for_log("REST connection limit reached")

    def served() -> bool:
        try:
            return http(port, "POST", PREDICT, GOOD).status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 30
    while not served():
        assert time.monotonic() < deadline, "still refusing after the held connections closed"
        time.sleep(0.05)
