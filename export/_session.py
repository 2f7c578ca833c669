"""Load a SavedModel the way TensorFlow Serving does and run its signatures by tensor name.

`tensorflow_model_server` does not use TF2's object loader. It imports the MetaGraph with the
requested tags into a fresh graph, runs the saver's restore op with the variables path fed, runs
the init op (`__saved_model_init_op`, else main_op / legacy_init_op) with the asset paths fed,
then serves each signature with `Session::Run` on the SignatureDef's tensor names
(tensorflow/cc/saved_model/loader.cc `LoadSavedModel`; tensorflow_serving/servables/tensorflow/
predict_util.cc `RunPredict`). `tf.compat.v1.saved_model.loader.load` implements the same
algorithm in Python, so a version that runs here runs there (given the same op set: see the
TensorFlow pin in deploy/).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._errors import VerificationError

# TF's message for a resource variable whose handle was never assigned (restore missed it).
_MISSING_VARIABLE = re.compile(r"Could not find variable ([^\s.]+(?:\.[^\s.]+)*?)\. ")
_UNINITIALIZED_TABLE = re.compile(r"Table not initialized", re.IGNORECASE)
_NODE = re.compile(r"\{\{node ([^}]+)\}\}")
_OP_NOT_REGISTERED = re.compile(r"Op type not registered '([^']+)'")


class SessionModel:
    """One SavedModel MetaGraph loaded into its own tf.Graph and tf.compat.v1.Session.

    Example:
        >>> with SessionModel("models/digits/1") as model:
        ...     outputs = model.run("serving_default", {"pixels": np.zeros((1, 8, 8), np.float32)})
    """

    def __init__(self, path: str | Path, *, tags: Sequence[str] = ("serve",)) -> None:
        import tensorflow as tf

        self.path = Path(path)
        self.tags = tuple(tags)
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph)
        try:
            with self._graph.as_default(), _quiet_tensorflow_logging():
                self.meta_graph = tf.compat.v1.saved_model.loader.load(self._session, list(self.tags), str(self.path))
        except BaseException as exc:
            self._session.close()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise VerificationError(
                f"{self.path} does not load the way TF Serving loads it (Session loader, tags {list(self.tags)}): "
                f"{describe_tf_error(exc)}"
            ) from exc
        self.signature_defs = dict(self.meta_graph.signature_def)

    def __enter__(self) -> "SessionModel":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def tensor(self, name: str) -> Any:
        """The graph's tensor `name` ("op:0"), or None if the graph has no such tensor."""
        try:
            return self._graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            return None

    def run(self, signature_name: str, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Feed `inputs` (alias -> array) to the signature's tensors by name and fetch every output.

        Raises:
            VerificationError: one line naming the signature and the variable, table or op that failed.
        """
        signature = self.signature_defs.get(signature_name)
        if signature is None:
            raise VerificationError(
                f"Signature {signature_name!r} is not in {self.path}. Available: {sorted(self.signature_defs)}"
            )
        unknown = sorted(set(inputs) - set(signature.inputs))
        if unknown:
            raise VerificationError(
                f"Signature {signature_name!r} has no inputs {unknown}. Expected: {sorted(signature.inputs)}"
            )
        feeds = {signature.inputs[alias].name: _feed_value(value) for alias, value in inputs.items()}
        fetches = {alias: info.name for alias, info in signature.outputs.items()}
        try:
            outputs = self._session.run(fetches, feed_dict=feeds)
        except Exception as exc:
            raise VerificationError(
                f"Signature {signature_name!r} fails under the Session loader (as TF Serving runs it): "
                f"{describe_tf_error(exc)}"
            ) from exc
        return {alias: np.asarray(value) for alias, value in outputs.items()}


def describe_tf_error(exc: BaseException) -> str:
    """One line for a TensorFlow error: the variable/table/op that failed, then TF's own message."""
    message = str(getattr(exc, "message", None) or exc)
    first = _first_meaningful_line(message) or type(exc).__name__
    node = _NODE.search(message)
    op = getattr(exc, "op", None)
    op_name = getattr(op, "name", None) or (node.group(1) if node else None)
    where = f" (op {op_name})" if op_name else ""
    variable = _MISSING_VARIABLE.search(message)
    if variable:
        return (
            f"variable {variable.group(1)!r} is not initialized after the restore op{where}; "
            f"the checkpoint does not reach the handle the graph reads ({type(exc).__name__})"
        )
    if _UNINITIALIZED_TABLE.search(message):
        return f"a lookup table is not initialized after the init op{where} ({type(exc).__name__}: {first})"
    unregistered = _OP_NOT_REGISTERED.search(message)
    if unregistered:
        return f"op {unregistered.group(1)!r} is not registered in this TensorFlow ({type(exc).__name__}: {first})"
    if len(first) > 400:
        first = first[:400] + "..."
    return f"{type(exc).__name__}{where}: {first}"


def _first_meaningful_line(message: str) -> str:
    # TF1 session errors open with "Graph execution error:" and a "Detected at node" preamble;
    # the line that says what went wrong comes after them.
    for line in message.splitlines():
        text = line.strip()
        if not text or text.startswith(("Graph execution error", "Detected at node", "Node:", "[[", "File ", "Original stack trace")):
            continue
        return text
    return ""


def _feed_value(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
    return array


@contextlib.contextmanager
def _quiet_tensorflow_logging() -> Iterator[None]:
    """Hide the v1 loader's deprecation notice and restore chatter; errors still raise."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
