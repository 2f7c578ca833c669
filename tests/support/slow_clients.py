"""Misbehaving HTTP clients for resource-limit tests and benchmarks (loopback only).

    held = SlowClients("127.0.0.1", port, count=500)   # each sends a partial request head
    held.trickle()                                      # one more header byte on every open socket
    held.open_count()                                   # sockets the server has not closed yet
"""

from __future__ import annotations

import re
import select
import socket
import time


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as handle:
        match = re.search(r"VmRSS:\s+(\d+) kB", handle.read())
    assert match is not None
    return int(match.group(1)) * 1024


class SlowClients:
    """`count` sockets that start a request and never finish its headers (slowloris)."""

    def __init__(self, host: str, port: int, *, count: int, send_nothing: bool = False) -> None:
        self.sockets: list[socket.socket] = []
        self._closed: set[int] = set()
        for i in range(count):
            sock = socket.create_connection((host, port), timeout=10)
            if not send_nothing:
                sock.sendall(f"POST /v1/models/m:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ".encode())
            sock.setblocking(False)
            self.sockets.append(sock)

    def trickle(self) -> None:
        """Send one more header byte on every socket the server still holds open."""
        for index, sock in enumerate(self.sockets):
            if index in self._closed:
                continue
            try:
                sock.send(b"a")
            except OSError:
                self._closed.add(index)

    def open_count(self) -> int:
        """Sockets not yet closed by the server (a readable socket that reads EOF/error is closed).
        poll(), not select(): a test holding 1,000+ sockets has descriptors above select's 1024."""
        poller = select.poll()
        live = {s.fileno(): (i, s) for i, s in enumerate(self.sockets) if i not in self._closed}
        for fd in live:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            index, sock = live[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data or data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 5"):
                self._closed.add(index)
        return len(self.sockets) - len(self._closed)

    def wait_closed(self, *, deadline_seconds: float, trickle_every: float = 0.5) -> int:
        """Trickle until the server closed them all or the deadline passes; returns how many stay open."""
        deadline = time.monotonic() + deadline_seconds
        while self.open_count() and time.monotonic() < deadline:
            self.trickle()
            time.sleep(trickle_every)  # pacing of the slow client itself, not synchronisation
        return self.open_count()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def raise_fd_limit(wanted: int) -> None:
    """Allow this process `wanted` open files (for hundreds of test sockets)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
