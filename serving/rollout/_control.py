"""How rollout reaches a server: the `ServerControl` protocol and `LiveServer`, a real server.

A rollout phase needs four things from a server: take a new config (`reload`), and say when a
version is AVAILABLE, when a label reaches a version and when a version is gone. `LiveServer`
does them with tfstack's client over gRPC and/or REST, and reloads with TF Serving's
`ModelService/HandleReloadConfigRequest` (or leaves it to the server's config polling);
`tfstack.serving.rollout.Fleet` does them on every replica of a fleet; tests pass fakes.

No TensorFlow: the reload request is tfstack's own copy of TF Serving's message
(`tfstack.client.wire`, the same wire format).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tfstack.serving.rollout._errors import RolloutError

if TYPE_CHECKING:
    from tfstack.client.wire import ModelServerConfig

# TF Serving's model management RPC, called by path like the client's other methods.
RELOAD_CONFIG = "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
# The request id (X-Request-ID / x-request-id) of every request rollout sends itself: the watch's
# probes and the infra gate. A server that logs requests stores it with them, so readers of the
# logs (the watch's drift check) can leave rollout's own traffic out.
ROLLOUT_REQUEST_ID = "tfstack-rollout"


class ServerControl(Protocol):
    """What rollout needs from a server. `LiveServer` talks to a real one; tests pass fakes."""

    def reload(self, config: ModelServerConfig) -> None:
        """Make the server use `config` now (or do nothing and rely on config polling)."""

    def wait_available(self, model_name: str, version: int, timeout: float) -> None:
        """Return when the version is AVAILABLE; raise RolloutError if it failed or timed out."""

    def wait_label(self, model_name: str, label: str, version: int, timeout: float) -> None:
        """Return when requests for `label` reach `version`; raise RolloutError on timeout."""

    def wait_unloaded(self, model_name: str, version: int, timeout: float) -> bool:
        """Return True once the version is no longer AVAILABLE, False on timeout."""

    def version_states(self, model_name: str) -> dict[int, str]:
        """Version -> state name as the server reports it ({} if the model is unknown)."""

    def predictors(self, model_name: str, version: int) -> dict[str, Callable[[str, dict], Mapping[str, Any]]]:
        """Protocol name -> predict(signature_name, inputs) bound to one version (infra gate)."""

    # Optional, used when present: `names` (the replicas, for messages), `restoring()` (a context
    # in which a failed step is undone; see tfstack.serving.rollout.Fleet), `replica_status(model_name,
    # labels)` (one ReplicaStatus per replica, for `status`) and `control_clients` (probes).


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReplicaStatus:
    """What one replica reports for a model: version states, where the labels lead, or why it did not answer."""

    name: str
    states: dict[int, str] = dataclasses.field(default_factory=dict)
    labels: dict[str, int | None] = dataclasses.field(default_factory=dict)  # None: does not resolve
    error: str | None = None
    differences: tuple[str, ...] = ()  # how it differs from the config (filled by Rollout.status)


class LiveServer:
    """A TF-Serving-compatible server reached over gRPC and/or REST (tfstack's client).

    Config reloads go through gRPC `ModelService/HandleReloadConfigRequest` when `grpc_target`
    is set and `use_reload_rpc` is true; otherwise the server must poll its config file
    (--model_config_file_poll_wait_seconds) and every wait simply lasts until it has.
    Every request carries the request id `ROLLOUT_REQUEST_ID`, so request logs tell it apart.
    """

    def __init__(
        self,
        *,
        grpc_target: str | None = None,
        rest_url: str | None = None,
        use_reload_rpc: bool = True,
        timeout: float = 30.0,
        reload_timeout: float | None = None,
    ) -> None:
        if not grpc_target and not rest_url:
            raise ValueError("LiveServer needs grpc_target and/or rest_url. Received: neither")
        from tfstack.client import ServingClient

        self.grpc_target = grpc_target
        self.rest_url = rest_url
        self.use_reload_rpc = use_reload_rpc and bool(grpc_target)
        self.timeout = timeout
        # TF Serving answers a reload once the new models are loaded, which can take a while.
        self.reload_timeout = max(timeout, 300.0) if reload_timeout is None else reload_timeout
        self._reload_channel: Any = None
        self._reload_call: Any = None
        self._clients: dict[str, Any] = {}
        if grpc_target:
            self._clients["grpc"] = ServingClient.grpc(grpc_target, timeout=timeout, metadata={"x-request-id": ROLLOUT_REQUEST_ID})
        if rest_url:
            self._clients["rest"] = ServingClient.rest(rest_url, timeout=timeout, headers={"X-Request-ID": ROLLOUT_REQUEST_ID})
        self._control = self._clients.get("grpc") or self._clients["rest"]

    def __repr__(self) -> str:
        return f"LiveServer(grpc_target={self.grpc_target!r}, rest_url={self.rest_url!r})"

    @property
    def name(self) -> str:
        """How messages name this server: its gRPC target, else its REST URL."""
        return self.grpc_target or self.rest_url or "?"

    @property
    def client(self) -> Any:
        """The ServingClient used for status and waits (gRPC if given, else REST)."""
        return self._control

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def control_clients(self) -> tuple[Any, ...]:
        """The client per replica that status, waits and probes use: here just `client`."""
        return (self._control,)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._reload_channel is not None:
            self._reload_channel.close()
            self._reload_channel = self._reload_call = None

    def reload(self, config: ModelServerConfig) -> None:
        if not self.use_reload_rpc:
            return
        import grpc

        from tfstack.client import wire

        request = wire.ReloadConfigRequest()
        # The same bytes whether `config` is tfstack's message or tensorflow_serving's.
        request.config.ParseFromString(config.SerializeToString())
        if self._reload_call is None:
            self._reload_channel = grpc.insecure_channel(self.grpc_target)
            self._reload_call = self._reload_channel.unary_unary(
                RELOAD_CONFIG,
                request_serializer=wire.ReloadConfigRequest.SerializeToString,
                response_deserializer=wire.ReloadConfigResponse.FromString,
            )
        try:
            response = self._reload_call(request, timeout=self.reload_timeout)
        except grpc.RpcError as exc:
            code = exc.code()
            verb = "did not answer" if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) else "rejected"
            hint = ""
            if code == grpc.StatusCode.UNIMPLEMENTED:
                hint = (" (this server does not take reloads over gRPC: use --no-reload-rpc and let it poll the file"
                        " with --model_config_file_poll_wait_seconds)")
            raise RolloutError(
                f"The server at {self.grpc_target} {verb} the config reload: {code.name}: {exc.details()}{hint}"
            ) from exc
        if response.status.error_code:
            try:
                code = wire.Code.Name(response.status.error_code)
            except ValueError:
                code = f"code {response.status.error_code}"
            raise RolloutError(
                f"The server at {self.grpc_target} rejected the config reload: {code}: {response.status.error_message}"
            )

    def wait_available(self, model_name: str, version: int, timeout: float) -> None:
        from tfstack.client import ServingError

        try:
            self._control.wait_until_available(model_name, version=version, timeout=timeout)
        except ServingError as exc:
            raise RolloutError(f"Version {version} of model {model_name!r} did not become AVAILABLE: {exc}") from exc

    def wait_label(self, model_name: str, label: str, version: int, timeout: float) -> None:
        from tfstack.client import ServingError

        deadline = time.monotonic() + timeout
        seen: object = "nothing yet"
        # Every front end resolves labels on its own; a label is moved once both agree.
        for protocol, client in self._clients.items():
            while True:
                try:
                    seen = client.get_model_metadata(model_name, version_label=label).version
                    if seen == version:
                        break
                except ServingError as exc:
                    seen = exc
                if time.monotonic() >= deadline:
                    raise RolloutError(
                        f"Label {label!r} of model {model_name!r} did not reach version {version} over {protocol} "
                        f"within {timeout:g}s; last seen: {seen}"
                    )
                time.sleep(0.05)

    def wait_unloaded(self, model_name: str, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self.version_states(model_name).get(version) != "AVAILABLE":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def version_states(self, model_name: str) -> dict[int, str]:
        from tfstack.client import ServingError

        try:
            status = self._control.get_model_status(model_name)
        except ServingError:
            return {}
        return {v.version: v.state for v in status.versions}

    def replica_status(self, model_name: str, labels: Sequence[str]) -> list[ReplicaStatus]:
        """This server's version states and where each of `labels` leads (one line of `status`)."""
        from tfstack.client import ServingError

        try:
            status = self._control.get_model_status(model_name)
        except ServingError as exc:
            return [ReplicaStatus(name=self.name, error=str(exc))]
        resolved: dict[str, int | None] = {}
        for label in labels:
            try:
                resolved[label] = self._control.get_model_metadata(model_name, version_label=label).version
            except ServingError:
                resolved[label] = None
        return [ReplicaStatus(name=self.name, states={v.version: v.state for v in status.versions}, labels=resolved)]

    def predictors(self, model_name: str, version: int) -> dict[str, Callable[[str, dict], Mapping[str, Any]]]:
        def bind(client: Any) -> Callable[[str, dict], Mapping[str, Any]]:
            return lambda signature_name, inputs: client.predict(
                model_name, inputs, version=version, signature_name=signature_name
            )

        return {protocol: bind(client) for protocol, client in self._clients.items()}
