"""Typed results of classify, regress, get_model_metadata and get_model_status.

The same classes come back over REST and gRPC. Where a protocol does not carry a value
(REST responses to classify/regress do not say which version answered) the field is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Classification",
    "ClassifyResult",
    "RegressResult",
    "TensorInfo",
    "SignatureInfo",
    "ModelMetadata",
    "VersionStatus",
    "ModelStatus",
]


@dataclass(frozen=True, kw_only=True)
class Classification:
    """The classes and scores for one example, in the order the model returned them."""

    labels: tuple[str, ...]
    scores: tuple[float, ...]

    def top(self) -> tuple[str, float]:
        """The (label, score) pair with the highest score."""
        if not self.scores:
            raise ValueError("This classification has no classes.")
        best = int(np.argmax(self.scores))
        return (self.labels[best] if self.labels else "", self.scores[best])


@dataclass(frozen=True, kw_only=True)
class ClassifyResult:
    """Result of `classify`: one Classification per example.

    `version` is the version that answered (gRPC only; None over REST).
    """

    classifications: tuple[Classification, ...]
    version: int | None = None

    @property
    def scores(self) -> np.ndarray:
        """Scores as a float32 array of shape [examples, classes]."""
        return np.asarray([c.scores for c in self.classifications], dtype=np.float32)

    @property
    def labels(self) -> list[list[str]]:
        """Labels per example (empty strings when the model has no `classes` output)."""
        return [list(c.labels) for c in self.classifications]


@dataclass(frozen=True, kw_only=True)
class RegressResult:
    """Result of `regress`: one value per example. `version` as in ClassifyResult."""

    values: tuple[float, ...]
    version: int | None = None

    def as_array(self) -> np.ndarray:
        """Values as a float32 array of shape [examples]."""
        return np.asarray(self.values, dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class TensorInfo:
    """One signature input or output.

    dtype is a numpy-style name ("float32", "int64", "string", "bool", ...);
    shape uses None for an unknown dimension and is None itself for an unknown rank.
    """

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True, kw_only=True)
class SignatureInfo:
    """One SignatureDef: its method and its named inputs and outputs."""

    method_name: str
    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ModelMetadata:
    """Result of `get_model_metadata`: the signatures of the version that answered."""

    model_name: str
    version: int
    signatures: dict[str, SignatureInfo]


@dataclass(frozen=True, kw_only=True)
class VersionStatus:
    """State of one version: state in UNKNOWN/START/LOADING/AVAILABLE/UNLOADING/END,
    error_code a canonical code name ("OK" when healthy)."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE"


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    """Result of `get_model_status`: versions in descending order, as the server lists them."""

    model_name: str
    versions: tuple[VersionStatus, ...]

    @property
    def available_versions(self) -> tuple[int, ...]:
        """Numbers of the AVAILABLE versions, highest first."""
        return tuple(v.version for v in self.versions if v.available)
