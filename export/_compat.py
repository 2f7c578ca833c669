"""Is a new version a drop-in replacement for an older one? Signature summaries compared.

A signature summary is what a manifest stores under `signatures` (and
`read_signature_summary` reads from a SavedModel): signature name -> `inputs` /
`outputs` -> alias -> `{"dtype": "float32", "shape": [-1, 8, 8]}` (-1: any size; shape None:
unknown rank). Export refuses to publish a breaking change onto an existing model unless told
to, and rollout's signature gate applies the same rule before a canary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tfstack.export._spec import FeatureSpec


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignatureComparison:
    """`breaks`: what clients of the old version would notice; `notes`: harmless additions."""

    breaks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def compatible(self) -> bool:
        return not self.breaks


def compare_signatures(old: Mapping[str, Any], new: Mapping[str, Any]) -> SignatureComparison:
    """Compare two signature summaries.

    Breaking: a signature of `old` is missing, an input is added/removed or changes dtype or
    narrows its shape, an output is removed or changes dtype or shape. New outputs and new
    signatures are notes.

    Example:
        >>> compare_signatures(v1_manifest["signatures"], v2_manifest["signatures"]).breaks
        ("serving_default: input 'pixels' shape changed incompatibly: [-1, 8, 8] -> [-1, 4]",)
    """
    for name, value in (("old", old), ("new", new)):
        if not isinstance(value, Mapping):
            raise TypeError(f"{name} signatures must be a mapping of signature summaries. Received: {type(value).__name__}")
    breaks: list[str] = []
    notes: list[str] = []
    for sig_name in sorted(old):
        if sig_name not in new:
            breaks.append(f"signature {sig_name!r} is missing (the new version has {sorted(new)})")
            continue
        before, after = old[sig_name], new[sig_name]
        old_in, new_in = before.get("inputs", {}), after.get("inputs", {})
        for key in sorted(set(old_in) - set(new_in)):
            breaks.append(f"{sig_name}: input {key!r} was removed (new inputs: {sorted(new_in)})")
        for key in sorted(set(new_in) - set(old_in)):
            breaks.append(f"{sig_name}: new required input {key!r} (existing clients do not send it)")
        for key in sorted(set(old_in) & set(new_in)):
            breaks += _tensor_breaks(f"{sig_name}: input {key!r}", old_in[key], new_in[key], accepting=True)
        old_out, new_out = before.get("outputs", {}), after.get("outputs", {})
        for key in sorted(set(old_out) - set(new_out)):
            breaks.append(f"{sig_name}: output {key!r} was removed (new outputs: {sorted(new_out)})")
        for key in sorted(set(new_out) - set(old_out)):
            notes.append(f"{sig_name}: new output {key!r}")
        for key in sorted(set(old_out) & set(new_out)):
            breaks += _tensor_breaks(f"{sig_name}: output {key!r}", old_out[key], new_out[key], accepting=False)
    for sig_name in sorted(set(new) - set(old)):
        notes.append(f"new signature {sig_name!r}")
    return SignatureComparison(breaks=tuple(breaks), notes=tuple(notes))


def _tensor_breaks(what: str, old: Mapping[str, Any], new: Mapping[str, Any], *, accepting: bool) -> list[str]:
    breaks = []
    if old.get("dtype") != new.get("dtype"):
        breaks.append(f"{what} dtype changed: {old.get('dtype')} -> {new.get('dtype')}")
    old_shape, new_shape = old.get("shape"), new.get("shape")
    if not _shape_compatible(old_shape, new_shape, accepting=accepting):
        breaks.append(f"{what} shape changed incompatibly: {old_shape} -> {new_shape}")
    return breaks


def _shape_compatible(old: Sequence[int] | None, new: Sequence[int] | None, *, accepting: bool) -> bool:
    """Inputs: the new version must accept every shape the old one accepted (-1 = any). Outputs: same known dims."""
    if new is None:  # unknown rank accepts (inputs) / may produce (outputs) anything
        return accepting or old is None
    if old is None:
        return False
    if len(old) != len(new):
        return False
    for old_dim, new_dim in zip(old, new):
        if new_dim == -1:
            if not accepting and old_dim != -1:
                return False
            continue
        if old_dim != new_dim:
            return False
    return True


def serving_signature(features: Sequence[FeatureSpec], *, task: str, class_names: Sequence[str] = ()) -> dict[str, Any]:
    """The `serving_default` summary a version exported from these raw inputs will have, known
    before any training: inputs `[-1, *shape]`; a classifier's `probabilities` `[-1, C]`,
    `class_id` and `class_label` `[-1]`; a regressor's `prediction` `[-1]`. Compare it with the
    latest version's (`ModelRepository.check_compatible(..., partial=True)`) to refuse a breaking
    publish before spending a training run on it.

    Example:
        >>> serving_signature([FeatureSpec("pixels", "float32", (8, 8))], task="classification", class_names="0123456789")
        {'serving_default': {'inputs': {'pixels': {'dtype': 'float32', 'shape': [-1, 8, 8]}}, 'outputs': {...}}}
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression'. Received: task={task!r}")
    inputs = {f.name: {"dtype": f.dtype, "shape": [-1, *f.shape]} for f in features}
    if task == "regression":
        outputs = {"prediction": {"dtype": "float32", "shape": [-1]}}
    else:
        outputs = {
            "probabilities": {"dtype": "float32", "shape": [-1, len(class_names)]},
            "class_id": {"dtype": "int64", "shape": [-1]},
            "class_label": {"dtype": "string", "shape": [-1]},
        }
    return {"serving_default": {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict"}}
