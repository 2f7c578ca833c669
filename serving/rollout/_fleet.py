"""A fleet of TF-Serving-compatible replicas driven as one rollout target.

Replicas share one models.config (a volume or ConfigMap on Kubernetes, one file on one host).
`Fleet` is a `ServerControl` (see `_control`): each reload goes to every replica, and
each wait returns only when every replica agrees, so a rollout phase is over only when the
whole fleet is in it. The replicas are handled in parallel, each with the full deadline.

A replica that fails (a rejected or unreachable reload, a version that does not load, a label
that does not resolve in time) fails the phase with a `ReplicaError` naming it and saying why.
`Rollout` then restores the previous state inside `Fleet.restoring()`: the replicas that
still answer are moved back and waited on as usual; the failed ones only get a best-effort
reload (they read the restored file whenever they start again).

Where the replicas are: `resolve_replicas` turns `--grpc`/`--rest` values and a servers file
into addresses; `dns:///name:port` (gRPC's name syntax) stands for every address the name
resolves to, e.g. a Kubernetes headless Service, which resolves to each ready pod.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tfstack.serving.rollout._control import ReplicaStatus, ServerControl
from tfstack.serving.rollout._errors import ReplicaError, RolloutError

logger = logging.getLogger("tfstack.rollout")

DNS_PREFIXES = ("dns:///", "dns:")
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


# ================================================================================ addresses


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplicaAddress:
    """Where one replica answers: its gRPC target and/or its REST URL."""

    grpc_target: str | None = None
    rest_url: str | None = None

    @property
    def name(self) -> str:
        return self.grpc_target or self.rest_url or "?"


def _split_host_port(value: str, *, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} must be host:port. Received: {value!r}")
    return host, int(port)


def _dns_name(value: str, *, what: str) -> str | None:
    """The host:port after a gRPC `dns:` prefix, or None when `value` is not a DNS name."""
    if value.startswith("dns:///"):
        return value[len("dns:///"):]
    if value.startswith("dns://"):
        raise ValueError(
            f"{what}: a DNS server in the name (dns://SERVER/...) is not supported; use dns:///NAME:PORT. "
            f"Received: {value!r}"
        )
    if value.startswith("dns:"):
        return value[len("dns:"):]
    return None


def resolve_name(host: str, port: int, *, resolve: Resolver = socket.getaddrinfo) -> list[str]:
    """Every address `host` resolves to, one address family (IPv4 if it has any), sorted.

    A Kubernetes headless Service resolves to one address per ready pod; a dual-stack one also
    gives each pod an IPv6 address, which must not count as a second replica.
    """
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"Cannot resolve {host!r}: {exc}") from exc
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    v4: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = sorted((a for a in addresses if a.version == 4), key=int)
    chosen = v4 or sorted((a for a in addresses if a.version == 6), key=int)
    if not chosen:
        raise ValueError(f"{host!r} resolves to no address")
    return [str(a) if a.version == 4 else f"[{a}]" for a in chosen]


def _expand(value: str, *, what: str, rest: bool, resolve: Resolver) -> tuple[list[str], bool]:
    """(addresses, from_dns) for one --grpc/--rest value."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty address. Received: {value!r}")
    value = value.strip()
    name = _dns_name(value, what=what)
    if name is None:
        if rest:
            url = value if "://" in value else f"http://{value}"
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{what} must be an http(s):// URL, host:port or dns:///NAME:PORT. Received: {value!r}")
            return [url.rstrip("/")], False
        if "://" in value:
            raise ValueError(f"{what} must be host:port or dns:///NAME:PORT (no http:// scheme). Received: {value!r}")
        _split_host_port(value, what=what)
        return [value], False
    host, port = _split_host_port(name, what=what)
    try:
        addresses = resolve_name(host, port, resolve=resolve)
    except ValueError as exc:
        raise ValueError(f"{what} {value!r}: {exc}") from exc
    return [f"http://{a}:{port}" if rest else f"{a}:{port}" for a in addresses], True


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


def _pair(grpc: Sequence[str], rest: Sequence[str], *, where: str, resolve: Resolver) -> list[ReplicaAddress]:
    grpc_addresses: list[str] = []
    rest_addresses: list[str] = []
    dns = False
    for value in grpc:
        found, from_dns = _expand(value, what=f"{where}gRPC address", rest=False, resolve=resolve)
        grpc_addresses += found
        dns |= from_dns
    for value in rest:
        found, from_dns = _expand(value, what=f"{where}REST address", rest=True, resolve=resolve)
        rest_addresses += found
        dns |= from_dns
    if grpc_addresses and rest_addresses:
        if len(grpc_addresses) != len(rest_addresses):
            raise ValueError(
                f"{where}Each replica needs one gRPC and one REST address in the same order, or only one kind. "
                f"Received: {len(grpc_addresses)} gRPC ({', '.join(grpc_addresses)}) and "
                f"{len(rest_addresses)} REST ({', '.join(rest_addresses)})"
            )
        if dns:
            # Names resolve in address order, so the pairs are the same pods; say so if not.
            for g, r in zip(grpc_addresses, rest_addresses):
                if _host(g) != _host(r):
                    raise ValueError(
                        f"{where}The gRPC and REST names resolve to different hosts ({g} vs {r}); "
                        "give both as the same name with different ports, or list the replicas."
                    )
        return [ReplicaAddress(grpc_target=g, rest_url=r) for g, r in zip(grpc_addresses, rest_addresses)]
    return [ReplicaAddress(grpc_target=g) for g in grpc_addresses] + [ReplicaAddress(rest_url=r) for r in rest_addresses]


def read_servers_file(path: str | os.PathLike[str], *, resolve: Resolver = socket.getaddrinfo) -> list[ReplicaAddress]:
    """Replicas listed in a file, one per line: `GRPC_TARGET [REST_URL]` (`-` for none);
    `#` starts a comment. Either may be `dns:///NAME:PORT`, standing for every address of NAME.
    """
    try:
        lines = open(os.fspath(path), encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"Cannot read the servers file {os.fspath(path)!r}: {exc}") from exc
    replicas: list[ReplicaAddress] = []
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{os.fspath(path)} line {number}: "
        if len(fields) > 2:
            raise ValueError(f"{where}expected `GRPC_TARGET [REST_URL]` (use - for none). Received: {line.strip()!r}")
        grpc = [fields[0]] if fields[0] != "-" else []
        rest = [fields[1]] if len(fields) == 2 and fields[1] != "-" else []
        if not grpc and not rest:
            raise ValueError(f"{where}a replica needs a gRPC target or a REST URL. Received: {line.strip()!r}")
        replicas += _pair(grpc, rest, where=where, resolve=resolve)
    if not replicas:
        raise ValueError(f"The servers file {os.fspath(path)!r} lists no replica (one `GRPC_TARGET [REST_URL]` per line).")
    return replicas


def resolve_replicas(
    grpc: Sequence[str] = (),
    rest: Sequence[str] = (),
    *,
    servers_file: str | os.PathLike[str] | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> list[ReplicaAddress]:
    """The replicas named by repeated --grpc/--rest values (paired in order) and a servers file.

    Raises:
        ValueError: a malformed address, a name that does not resolve, unpaired gRPC/REST lists,
            or a replica listed twice.
    """
    replicas = _pair(list(grpc), list(rest), where="", resolve=resolve) if (grpc or rest) else []
    if servers_file is not None:
        replicas += read_servers_file(servers_file, resolve=resolve)
    seen: dict[str, ReplicaAddress] = {}
    for replica in replicas:
        for address in (replica.grpc_target, replica.rest_url):
            if address is not None and address in seen:
                raise ValueError(f"Replica {address} is listed twice; list each replica once.")
            if address is not None:
                seen[address] = replica
    return replicas


# ================================================================================ fleet


class Fleet:
    """Several replicas as one `ServerControl`: every call on each, in parallel.

    Args:
        replicas: one ServerControl per replica (`LiveServer`s; tests pass fakes). Each should
            have a `name`; otherwise "replica N" is used.
        best_effort_timeout: seconds a failed replica gets to take the restored config.

    Example:
        >>> fleet = Fleet([LiveServer(grpc_target=t) for t in ("10.0.0.5:8500", "10.0.0.6:8500")])
        >>> Rollout("models.config", "models", server=fleet).promote("iris")
    """

    def __init__(self, replicas: Sequence[ServerControl], *, best_effort_timeout: float = 10.0) -> None:
        replicas = tuple(replicas)
        if not replicas:
            raise ValueError("A fleet needs at least one replica. Received: none")
        names = tuple(getattr(r, "name", None) or f"replica {i + 1}" for i, r in enumerate(replicas))
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
        if duplicates:
            raise ValueError(f"Replica names must be unique. Received twice: {duplicates}")
        self.replicas = replicas
        self.names = names
        self.best_effort_timeout = best_effort_timeout
        self._failed: dict[str, str] = {}
        self._restoring = False
        self._warned: set[str] = set()  # failed replicas already reported during this restore

    def __repr__(self) -> str:
        return f"Fleet({list(self.names)})"

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def name(self) -> str:
        return f"fleet of {len(self)} ({', '.join(self.names)})"

    @property
    def control_clients(self) -> tuple[Any, ...]:
        return tuple(c for r in self.replicas for c in getattr(r, "control_clients", ()))

    @property
    def client(self) -> Any:
        return self.control_clients[0]

    def close(self) -> None:
        for replica in self.replicas:
            close = getattr(replica, "close", None)
            if close is not None:
                close()

    # ---------------------------------------------------------------- running on each replica

    def _active(self) -> list[tuple[str, ServerControl]]:
        return [(n, r) for n, r in zip(self.names, self.replicas) if n not in self._failed]

    @staticmethod
    def _gather(
        replicas: Sequence[tuple[str, ServerControl]], call: Callable[[ServerControl], Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Run `call` on each replica in parallel: (results, errors) by replica name."""
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(replicas) or 1) as pool:
            futures = {pool.submit(call, replica): name for name, replica in replicas}
            for future in concurrent.futures.as_completed(futures):
                name = futures[future]
                try:
                    results[name] = future.result()
                except Exception as exc:  # any failure of one replica is reported with its name
                    errors[name] = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
        return results, errors

    def _each(self, call: Callable[[ServerControl], Any], what: str) -> dict[str, Any]:
        """Run `call` on every active replica in parallel; raise ReplicaError if any failed."""
        results, errors = self._gather(self._active(), call)
        if errors:
            failed = [n for n in self.names if n in errors]
            if not self._restoring:
                self._failed = {n: errors[n] for n in failed}
            total = len(self.replicas)
            if len(failed) == 1:
                index = self.names.index(failed[0]) + 1
                message = f"Replica {failed[0]} ({index} of {total}) failed to {what}: {errors[failed[0]]}"
            else:
                lines = "\n".join(f"  - {n}: {errors[n]}" for n in failed)
                message = f"{len(failed)} of {total} replicas failed to {what}:\n{lines}"
            raise ReplicaError(message, failed)
        return results

    @contextlib.contextmanager
    def restoring(self) -> Iterator[None]:
        """While a failed step is undone: skip the replicas that failed it (best-effort reloads only)."""
        self._restoring = True
        try:
            yield
        finally:
            self._restoring = False
            self._failed = {}
            self._warned = set()

    # ---------------------------------------------------------------- ServerControl

    def reload(self, config: Any) -> None:
        failed = [(n, r) for n, r in zip(self.names, self.replicas) if n in self._failed]
        helpers = [self._best_effort_reload(n, r, config) for n, r in failed]
        try:
            self._each(lambda r: r.reload(config), "reload the config")
        finally:
            for thread in helpers:
                thread.join(self.best_effort_timeout)

    def _best_effort_reload(self, name: str, replica: ServerControl, config: Any) -> threading.Thread:
        def run() -> None:
            try:
                replica.reload(config)
                logger.info("%s: took the restored config", name)
            except Exception as exc:  # it already failed once; the others must not wait on it
                if name not in self._warned:
                    self._warned.add(name)
                    logger.warning("%s: could not take the restored config (%s); it reads the file when it starts "
                                   "again", name, exc)

        thread = threading.Thread(target=run, name=f"restore {name}", daemon=True)
        thread.start()
        return thread

    def wait_available(self, model_name: str, version: int, timeout: float) -> None:
        self._each(lambda r: r.wait_available(model_name, version, timeout), f"load version {version} of {model_name!r}")

    def wait_label(self, model_name: str, label: str, version: int, timeout: float) -> None:
        self._each(lambda r: r.wait_label(model_name, label, version, timeout),
                   f"resolve label {label!r} of {model_name!r} to version {version}")

    def wait_unloaded(self, model_name: str, version: int, timeout: float) -> bool:
        try:
            done = self._each(lambda r: r.wait_unloaded(model_name, version, timeout), f"unload version {version}")
        except ReplicaError as exc:
            logger.warning("%s", exc)
            return False
        return all(done.values())

    def version_states(self, model_name: str) -> dict[int, str]:
        """Version -> its state where every replica agrees, else e.g. "AVAILABLE 2/3, END 1/3"."""
        per_replica, errors = self._gather(list(zip(self.names, self.replicas)), lambda r: r.version_states(model_name))
        total = len(self.replicas)
        merged: dict[int, str] = {}
        for version in sorted({v for states in per_replica.values() for v in states}):
            counts = Counter(
                "unreachable" if n in errors else per_replica.get(n, {}).get(version, "-") for n in self.names
            )
            if len(counts) == 1:
                merged[version] = next(iter(counts))
            else:
                merged[version] = ", ".join(f"{state} {count}/{total}" for state, count in counts.most_common())
        return merged

    def replica_status(self, model_name: str, labels: Sequence[str]) -> list[ReplicaStatus]:
        statuses, errors = self._gather(
            list(zip(self.names, self.replicas)),
            lambda r: list(r.replica_status(model_name, labels)),  # type: ignore[attr-defined]
        )
        return [
            status
            for name in self.names
            for status in statuses.get(name, [ReplicaStatus(name=name, error=errors.get(name))])
        ]

    def predictors(self, model_name: str, version: int) -> dict[str, Callable[[str, dict], Mapping[str, Any]]]:
        """Every replica's predictors, keyed "<replica> <protocol>" (the infra gate checks each)."""
        return {
            f"{name} {protocol}": predict
            for name, replica in self._active()
            for protocol, predict in replica.predictors(model_name, version).items()
        }
