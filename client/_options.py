"""Client configuration: retry policy and TLS settings (frozen, keyword-only)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RetryPolicy", "TlsConfig", "DEFAULT_MAX_MESSAGE_SIZE"]

# TF Serving itself accepts INT32_MAX bytes in both directions (spec §3.1); the gRPC
# default of 4 MiB would reject ordinary image batches.
DEFAULT_MAX_MESSAGE_SIZE = 2**31 - 1


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how often to resend a request that failed with UNAVAILABLE / connection refused.

    Status and metadata calls are always retried under this policy. Inference calls
    (predict, classify, regress) are retried only if `retry_inference` is True, because a
    request that reached the server may have run already.

    Backoff before attempt n+1 is min(max_backoff, initial_backoff * multiplier**(n-1)),
    scaled by a random factor in [1 - jitter, 1 + jitter]. Retries never outlive the call's
    timeout.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retry_inference: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1. Received: max_attempts={self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0. Received: {name}={value!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1]. Received: jitter={self.jitter!r}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)


NO_RETRY = RetryPolicy(max_attempts=1)


def _pem(value: bytes | str | Path | None, what: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (str, Path)):
        try:
            return Path(value).read_bytes()
        except OSError as exc:
            raise ValueError(f"Cannot read the {what} file. Received: {what}={str(value)!r}") from exc
    raise TypeError(f"{what} must be PEM bytes or a file path. Received: {what}={value!r}")


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """TLS for https:// REST URLs and secure gRPC channels; used for mutual TLS too.

    Each certificate field takes PEM bytes or a path to a PEM file.

    Args:
        root_certificates: CA bundle that signs the server certificate (None: system roots).
        certificate_chain: the client's certificate, for mutual TLS.
        private_key: the client's private key, for mutual TLS.
        server_name: host name to verify in the server certificate instead of the target's.
    """

    root_certificates: bytes | str | Path | None = None
    certificate_chain: bytes | str | Path | None = None
    private_key: bytes | str | Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError(
                "Mutual TLS needs both certificate_chain and private_key. Received: "
                f"certificate_chain={'set' if self.certificate_chain is not None else None}, "
                f"private_key={'set' if self.private_key is not None else None}"
            )

    def pem(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root_certificates, certificate_chain, private_key) as PEM bytes."""
        return (
            _pem(self.root_certificates, "root_certificates"),
            _pem(self.certificate_chain, "certificate_chain"),
            _pem(self.private_key, "private_key"),
        )
