"""One loaded model version, built the way TF Serving builds a SavedModelBundle (issue 13).

`load_servable` follows TF Serving's bundle factory (`saved_model_bundle_factory.cc`) and
TensorFlow's C++ loader (`cc/saved_model/loader.cc` LoadSavedModelInternal), step by step:

1. an old SessionBundle export (`export.meta`) is refused, a directory without
   `saved_model.pb(txt)` is NOT_FOUND (`session_bundle/oss/session_bundle_util.cc`);
2. the MetaGraph whose tag set equals `--saved_model_tags` is read (`reader.cc` texts);
3. session options: `--tensorflow_session_config_file`, the thread flags, then the version's
   `assets.extra/saved_model_config.pb` session overrides (grappler options);
4. the graph is imported into its own `tf.Graph` and a `tf.compat.v1.Session` is created;
5. variables are restored by running the SaverDef's restore op with the variables path and the
   asset paths fed (skipped when `variables/variables.index` does not exist);
6. the init op (`__saved_model_init_op` signature, else the `saved_model_main_op` collection,
   else `legacy_init_op`) runs with the asset file paths fed to their placeholders.
Steps 5 and 6 run through one-shot callables that are released right away, as the C++ loader's
RunOnce does, so nothing of them stays cached in the session.

With `--prefer_tflite_model` and a `model.tflite` in the version directory, the version is
served by TensorFlow Lite interpreters instead, with the signatures TF Serving's TfLiteSession
derives (`tflite_session.cc`).

Requests run through `Servable.run(feeds, fetches)`: tensor names in, tensors out, through a
Session callable cached per (feed names, fetch names), which releases the GIL while TensorFlow
computes. Only `tfstack.serving.server._inference` decides what to feed and fetch for each API.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tfstack.serving._errors import Code, StatusError, status_from_tf_error
from tfstack.serving.server._protos import message_class

if TYPE_CHECKING:  # the protos import TensorFlow; keep `from tfstack import serving` cheap
    from tensorflow.core.protobuf.meta_graph_pb2 import MetaGraphDef, SignatureDef

    from tfstack.serving.server._batching import BatchingParameters

logger = logging.getLogger("tfstack.serving")

TFLITE_MODEL_FILE = "model.tflite"
SAVED_MODEL_CONFIG_FILE = "saved_model_config.pb"
_INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"
_MAIN_OP_KEY = "saved_model_main_op"
_LEGACY_INIT_OP_KEY = "legacy_init_op"
_ASSETS_KEY = "saved_model_assets"
_PREDICT_METHOD = "tensorflow/serving/predict"
_DEFAULT_SIGNATURE = "serving_default"
# saved_model_config_util.h: the grappler optimizers a SavedModelConfig's session overrides name.
_REMOTE_OP_REWRITER = ("remote_op_config_rewrite", "remote_op_rewrite_config")
_BATCH_OP_REWRITER = ("batch_op_rewriter", "batch_op_rewrite_config")


def _cpus() -> int:
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class BundleOptions:
    """How versions are loaded: TF Serving's SessionBundleConfig, from the server flags.

    Attributes:
        saved_model_tags: the MetaGraph's exact tag set (`--saved_model_tags`, comma-split).
        session_config: a serialized `tensorflow.ConfigProto` for every Session, built as
            server.cc does (`session_config_from_flags`); None: the server's default (what
            `tfstack serve` uses without any session flag).
        mixed_precision: `--mixed_precision` ("bfloat16" turns on oneDNN's bf16 rewrite).
        prefer_tflite_model: serve `model.tflite` when the version directory has one.
        num_tflite_pools: interpreters per TF Lite model (`--num_tflite_pools`).
        run_in_caller_thread: run each request's graph on the thread that calls the Session
            instead of TensorFlow's single inter-op thread (RunOptions.inter_op_thread_pool = -1).
            Only takes effect with exactly one inter-op thread. None: only when `session_config`
            is the server's default (no thread flag or session config file was given); an explicit
            `--tensorflow_inter_op_parallelism=1` keeps TensorFlow's one-thread pool, as in TF Serving.
    """

    saved_model_tags: tuple[str, ...] = ("serve",)
    session_config: bytes | None = None
    mixed_precision: str = ""
    prefer_tflite_model: bool = False
    num_tflite_pools: int = dataclasses.field(default_factory=_cpus)
    run_in_caller_thread: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.saved_model_tags, str):
            raise TypeError(f"saved_model_tags must be a sequence of tags. Received: {self.saved_model_tags!r}")
        if self.num_tflite_pools < 0:
            raise ValueError(f"num_tflite_pools must be >= 0. Received: num_tflite_pools={self.num_tflite_pools}")


def session_config_from_flags(
    *,
    session_parallelism: int = 0,
    intra_op_parallelism: int = 0,
    inter_op_parallelism: int = 0,
    session_config_file: str = "",
    per_process_gpu_memory_fraction: float = 0.0,
    threads_when_unset: int = 1,
) -> bytes:
    """The serialized ConfigProto server.cc puts in SessionBundleConfig.session_config.

    One deliberate difference: when none of the three thread flags is set, TF Serving leaves 0
    (TensorFlow sizes both pools to the core count) where this gives `threads_when_unset` to
    both pools. The embedded server already runs requests in parallel on its own threads, and on
    a 2-core machine TensorFlow's auto pools made a batch-1 digits Session call 1.7-3x slower
    (docs/performance.md). Pass 0 for TF Serving's behaviour.

    Raises:
        StatusError: INVALID_ARGUMENT when all three thread flags are set (server.cc's text) or
            the session config file does not parse (`Invalid protobuf file: '<path>'`).
    """
    from google.protobuf import text_format
    from tensorflow.core.protobuf import config_pb2

    from tfstack.serving.server._model_config import read_text_proto_file

    config = config_pb2.ConfigProto()
    if session_config_file:
        text = read_text_proto_file(session_config_file, what="ConfigProto")
        try:
            text_format.Parse(text, config)
        except text_format.ParseError as exc:
            logger.error("Failed to parse ConfigProto file %s: %s", session_config_file, exc)
            raise StatusError(Code.INVALID_ARGUMENT, f"Invalid protobuf file: '{session_config_file}'") from exc
    config.gpu_options.per_process_gpu_memory_fraction = per_process_gpu_memory_fraction
    if intra_op_parallelism > 0 and inter_op_parallelism > 0 and session_parallelism > 0:
        raise StatusError(
            Code.INVALID_ARGUMENT,
            "Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
            "separately. You cannot configure all.",
        )
    if intra_op_parallelism > 0 or inter_op_parallelism > 0:
        config.intra_op_parallelism_threads = intra_op_parallelism
        config.inter_op_parallelism_threads = inter_op_parallelism
    else:
        config.intra_op_parallelism_threads = session_parallelism or threads_when_unset
        config.inter_op_parallelism_threads = session_parallelism or threads_when_unset
    return config.SerializeToString()


class Runner(Protocol):
    """What executes a version's graph: a TF Session or a pool of TF Lite interpreters."""

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Feed arrays by tensor name, return the fetched tensors in `fetches` order (blocking)."""
        ...

    def feed_dtype(self, name: str) -> int | None:
        """The DataType enum a feed tensor takes, or None when unknown (then the run decides)."""
        ...

    def close(self) -> None:
        """Free the runtime (the Session, its graph, the interpreters)."""
        ...


class Servable:
    """One loaded model version: its SignatureDefs and the Session (or interpreters) that run them.

    Attributes:
        model_name: the served model's name.
        version: the version number (the directory name parsed as int).
        path: the version directory.
        signature_defs: `SignatureDef` protos by signature name, exactly as TF Serving reports
            them in GetModelMetadata.
        batching_parameters: the batching parameters of this version's queues, or None when its
            requests are not batched.
        platform: "tensorflow" (a SavedModel in a Session) or "tflite".
    """

    def __init__(
        self,
        *,
        model_name: str,
        version: int,
        path: str | os.PathLike[str],
        signature_defs: Mapping[str, SignatureDef],
        runner: Runner,
        batching_parameters: BatchingParameters | None = None,
        platform: str = "tensorflow",
    ) -> None:
        self.model_name = model_name
        self.version = version
        self.path = Path(path)
        self.signature_defs = dict(signature_defs)
        self.batching_parameters = batching_parameters
        self.platform = platform
        # What each API reads from a signature, derived once (tfstack.serving.server._inference fills it).
        self.request_plans: dict[Any, Any] = {}
        self._runner = runner
        # Leases keep the Session open while a request or a run uses it; `retire` closes it once
        # the last one ends (TF Serving frees a bundle when its last ServableHandle goes).
        self._lock = threading.Lock()
        self._leases = 0
        self._retired = False
        self._closed = False

    def __repr__(self) -> str:
        return f"Servable(model_name={self.model_name!r}, version={self.version}, platform={self.platform!r})"

    def signature_def_map(self):
        """The `tensorflow.serving.SignatureDefMap` that GetModelMetadata packs under "signature_def"."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in self.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        return sig_map

    def feed_dtype(self, name: str) -> int | None:
        """The DataType enum the graph's tensor `name` takes as a feed (None when unknown)."""
        return self._runner.feed_dtype(name)

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> dict[str, np.ndarray]:
        """One Session run (blocking): arrays fed by tensor name, the fetched tensors by name.

        Raises:
            StatusError: the runtime's error, with TensorFlow's code and text.
        """
        self.acquire()
        try:
            values = self._runner.run(feeds, fetches)
        finally:
            self.release()
        return dict(zip(fetches, values))

    # ------------------------------------------------------------------ lifetime

    @property
    def closed(self) -> bool:
        """Whether the Session has been freed (the version was unloaded)."""
        return self._closed

    def acquire(self) -> None:
        """Hold the Session open until `release` (a request or a run in progress).

        Raises:
            StatusError: NOT_FOUND when the version has already been unloaded.
        """
        with self._lock:
            if self._closed:
                raise StatusError(
                    Code.NOT_FOUND, f"Servable not found for request: Specific({self.model_name}, {self.version})"
                )
            self._leases += 1

    def release(self) -> None:
        """End one `acquire`; closes the Session if the version was retired meanwhile."""
        with self._lock:
            self._leases -= 1
            close = self._retired and self._leases == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self._close()

    def retire(self) -> None:
        """The version was unloaded: free the Session now, or when the last lease ends."""
        with self._lock:
            self._retired = True
            close = self._leases == 0 and not self._closed
            if close:
                self._closed = True
        if close:
            self._close()

    def _close(self) -> None:
        try:
            self._runner.close()
        except Exception:  # freeing must never fail an unload
            logger.exception("Closing %r failed", self)
        # No gc.collect(): the graph holds no Python operations (see _import_graph), so dropping
        # the Session frees it right away.
        self._runner = _ClosedRunner()
        _return_free_memory()
        logger.info("Freed the session of servable version {name: %s version: %d}", self.model_name, self.version)


_LIBC: Any = None


def _return_free_memory() -> None:
    """Ask glibc to give freed heap pages back to the OS (best effort; a few ms, only on unloads).

    TF Serving links tcmalloc, which returns memory on its own; with glibc, memory a closed
    Session freed would otherwise stay in the process as free heap. TensorFlow's oneDNN CPU
    allocator keeps its own pool either way (docs/performance.md, Memory).
    """
    global _LIBC
    if _LIBC is False:
        return
    try:
        if _LIBC is None:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        _LIBC = False


class _ClosedRunner:
    """Stands in for an unloaded version's runtime, so nothing keeps the old one alive."""

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        raise StatusError(Code.UNAVAILABLE, "The servable's session has been closed.")

    def feed_dtype(self, name: str) -> int | None:
        return None

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------- loading


def load_servable(
    model_name: str,
    version: int,
    path: str | os.PathLike[str],
    *,
    options: BundleOptions | None = None,
    batching_parameters: BatchingParameters | None = None,
) -> Servable:
    """Load one version directory the way TF Serving's bundle factory does (blocking).

    Args:
        model_name, version: the servable's id (used in logs and errors).
        path: the version directory.
        options: tags, session config and TF Lite settings (default: TF Serving's defaults).
        batching_parameters: this version's batching parameters (None: not batched).

    Raises:
        StatusError: the directory cannot be loaded; the code and text TF Serving reports.

    Example:
        >>> servable = load_servable("half_plus_two", 123, "/models/half_plus_two/00000123")
        >>> servable.run({"x:0": np.array([[2.0]], np.float32)}, ["y:0"])["y:0"]
        array([[3.]], dtype=float32)
    """
    options = options or BundleOptions()
    path = Path(path)
    started = time.perf_counter()
    runner: _SessionRunner | _TfLiteRunner
    if options.prefer_tflite_model and (path / TFLITE_MODEL_FILE).is_file():
        runner, signature_defs = _load_tflite(path / TFLITE_MODEL_FILE, options)
        platform = "tflite"
    else:
        runner, signature_defs = _load_saved_model(path, options)
        platform = "tensorflow"
    logger.info(
        "SavedModel load for tags { %s }; Status: success: OK. Took %d microseconds.",
        " ".join(options.saved_model_tags), (time.perf_counter() - started) * 1e6,
    )
    return Servable(
        model_name=model_name, version=version, path=path, signature_defs=signature_defs, runner=runner,
        batching_parameters=batching_parameters, platform=platform,
    )


def read_meta_graph(path: str | os.PathLike[str], tags: Sequence[str]) -> MetaGraphDef:
    """The MetaGraphDef of `path` whose tag set equals `tags` (TF's reader.cc, with its texts).

    Raises:
        StatusError: NOT_FOUND when there is no saved_model.pb(txt) or no MetaGraph with those tags.
    """
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(path)
    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if pb.is_file():
            saved_model.ParseFromString(pb.read_bytes())
        elif pbtxt.is_file():
            text_format.Parse(pbtxt.read_text(), saved_model)
        else:
            raise StatusError(
                Code.NOT_FOUND,
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. Check that "
                "the directory exists and that you have the right permissions for accessing it.",
            )
    except (OSError, message.DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        # ReadBinaryProto / ReadTextProto: DATA_LOSS for bytes that do not parse.
        raise StatusError(Code.DATA_LOSS, f"Can't parse {pb if pb.is_file() else pbtxt} as binary proto") from exc
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    raise StatusError(
        Code.NOT_FOUND,
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }}. "
        "To inspect available tag-sets in the SavedModel, please use the SavedModel CLI: `saved_model_cli`",
    )


def _load_saved_model(path: Path, options: BundleOptions) -> tuple[_SessionRunner, dict[str, SignatureDef]]:
    # session_bundle/oss/session_bundle_util.cc LoadSessionBundleOrSavedModelBundle.
    if (path / "export.meta").exists():
        raise StatusError(Code.UNIMPLEMENTED, "Session Bundle is deprecated and removed.")
    if not ((path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists()):
        raise StatusError(
            Code.NOT_FOUND,
            "Specified file path does not appear to contain a SavedModel bundle (should have a file called "
            f"`saved_model.pb`)\nSpecified file path: {path}",
        )
    meta_graph = read_meta_graph(path, options.saved_model_tags)
    inline = options.run_in_caller_thread
    runner = _SessionRunner.load(path, meta_graph, _session_config(path, options),
                                 run_in_caller_thread=options.session_config is None if inline is None else inline)
    # remove_unused_fields_from_bundle_metagraph: only the SignatureDefs are kept.
    return runner, dict(meta_graph.signature_def)


def _session_config(path: Path, options: BundleOptions):
    """ConfigProto for one version: the server's, mixed precision, then saved_model_config.pb."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    config = config_pb2.ConfigProto()
    serialized = options.session_config
    config.ParseFromString(session_config_from_flags() if serialized is None else serialized)
    rewrite = config.graph_options.rewrite_options
    if options.mixed_precision == "bfloat16":
        logger.info("Running inference with bfloat16 auto mixed precision")
        rewrite.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif options.mixed_precision:
        logger.warning("%s auto mixed precision is not supported. Valid option: bfloat16", options.mixed_precision)
    overrides = _read_session_overrides(path)
    if overrides is not None:
        for field, (optimizer, key) in (("remote_op_remap_config", _REMOTE_OP_REWRITER),
                                        ("batch_op_rewriter_config", _BATCH_OP_REWRITER)):
            if overrides.HasField(field):
                _set_custom_optimizer(rewrite, optimizer, key, getattr(overrides, field))
        rewrite.disable_meta_optimizer = overrides.disable_meta_optimizer
    return config


def _set_custom_optimizer(rewrite, name: str, key: str, serialized: bytes) -> None:
    import base64

    for optimizer in rewrite.custom_optimizers:
        if optimizer.name == name:
            break
    else:
        optimizer = rewrite.custom_optimizers.add(name=name)
    optimizer.parameter_map[key].s = base64.b64encode(serialized)


def _saved_model_config_classes():
    """`tensorflow.serving.SavedModelConfig` and `SessionOverrides`, built from their field lists.

    The pip packages do not ship saved_model_config.proto. The nested option messages are kept
    as bytes: they are only passed on, serialized, to grappler (as TF Serving does).
    """
    return message_class(
        "tfstack/saved_model_config.proto", "proto2",
        (("SessionOverrides", (("remote_op_remap_config", 1, "bytes"), ("batch_op_rewriter_config", 2, "bytes"),
                               ("disable_meta_optimizer", 3, "bool"))),
         ("SavedModelConfig", (("session_overrides", 1, "message", "SessionOverrides"),
                               ("tfrt_runtime_config", 2, "bytes"), ("critical", 3, "bool")))),
        "SavedModelConfig",
    )


def _read_session_overrides(path: Path):
    """`assets.extra/saved_model_config.pb`'s session overrides, or None (no file, none set, or broken).

    As in saved_model_bundle_factory.cc, a file that does not parse is logged and ignored.
    """
    config_path = path / "assets.extra" / SAVED_MODEL_CONFIG_FILE
    if not config_path.is_file():
        return None
    from google.protobuf.message import DecodeError

    logger.info("Loading model config from %s", config_path)
    config = _saved_model_config_classes()()
    try:
        config.ParseFromString(config_path.read_bytes())
    except (OSError, DecodeError) as exc:
        logger.warning("Failed to load saved model config: INTERNAL: Unable to parse SavedModelConfig: %s (%s)",
                       config_path, exc)
        return None
    return config.session_overrides if config.HasField("session_overrides") else None


def _asset_file_defs(meta_graph: MetaGraphDef) -> list:
    # loader.cc GetAssetFileDefs: the MetaGraph's own list, else the v1 assets collection.
    from tensorflow.core.protobuf import meta_graph_pb2

    if meta_graph.asset_file_def:
        return list(meta_graph.asset_file_def)
    assets = []
    if _ASSETS_KEY in meta_graph.collection_def:
        for packed in meta_graph.collection_def[_ASSETS_KEY].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            packed.Unpack(asset)
            assets.append(asset)
    return assets


def _init_op_name(path: Path, meta_graph: MetaGraphDef) -> str:
    # loader.cc GetInitOp: the init-op signature wins, then main_op, then legacy_init_op.
    signature = meta_graph.signature_def.get(_INIT_OP_SIGNATURE_KEY)
    if signature is not None:
        output = signature.outputs.get(_INIT_OP_SIGNATURE_KEY)
        return output.name if output is not None else ""
    key = _MAIN_OP_KEY if _MAIN_OP_KEY in meta_graph.collection_def else _LEGACY_INIT_OP_KEY
    if key not in meta_graph.collection_def:
        return ""
    nodes = meta_graph.collection_def[key].node_list.value
    if len(nodes) != 1:
        raise StatusError(Code.FAILED_PRECONDITION, f"Expected exactly one main op in : {path}")
    return nodes[0]


def _validate_saved_tensors(meta_graph: MetaGraphDef) -> None:
    # loader.cc ValidateSavedTensors: constants must have a value and a known size.
    for node in meta_graph.graph_def.node:
        value = node.attr.get("value")
        if value is not None and value.HasField("tensor"):
            shape = value.tensor.tensor_shape
            if shape.unknown_rank or any(dim.size < 0 for dim in shape.dim):
                raise StatusError(
                    Code.FAILED_PRECONDITION,
                    f'Saved model contains node "{node.name}" (op "{node.op}") which initializes from a tensor with '
                    "-1 elements",
                )
        elif value is None and node.op == "Const":
            raise StatusError(
                Code.FAILED_PRECONDITION,
                f'Saved model contains node "{node.name}" which is a constant tensor but no value has been provided',
            )


def _import_graph(graph, graph_def) -> None:
    """Import `graph_def` into `graph`'s C graph only, names unchanged (as Session::Create takes it).

    tf.graph_util.import_graph_def would also build a Python Operation for every node; those
    objects form reference cycles with the graph, so an unloaded version's graph would only be
    freed by a full garbage collection (~150 ms of GIL with TensorFlow imported), and they cost
    load time. The Session only needs the C graph.
    """
    import tensorflow as tf
    from tensorflow.python.client import pywrap_tf_session as c_api
    from tensorflow.python.framework import c_api_util

    options = c_api_util.ScopedTFImportGraphDefOptions()
    c_api.TF_ImportGraphDefOptionsSetPrefix(options.options, "")
    c_api.TF_ImportGraphDefOptionsSetValidateColocationConstraints(options.options, True)
    buffer = c_api.TF_NewBufferFromString(graph_def.SerializeToString())
    try:
        with graph._c_graph.get() as c_graph:
            results = c_api.TF_GraphImportGraphDefWithResults(c_graph, buffer, options.options)
        c_api.TF_DeleteImportGraphDefResults(results)
    except tf.errors.OpError as exc:  # what Session::Create would refuse
        raise status_from_tf_error(exc) from exc
    finally:
        c_api.TF_DeleteBuffer(buffer)


def _tensor_dtypes(graph_def, names: set[str]) -> dict[str, int]:
    """DataType enums of the tensors `names` ("node:index"), from the nodes' OpDefs (unknown: left out)."""
    from tensorflow.python.framework import op_def_registry

    wanted: dict[str, list[tuple[str, int]]] = {}
    for name in names:
        node, _, position = name.partition(":")
        wanted.setdefault(node, []).append((name, int(position) if position.isdigit() else 0))
    dtypes: dict[str, int] = {}
    for node in graph_def.node:
        if node.name not in wanted:
            continue
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            continue
        flat: list[int] = []
        for arg in op_def.output_arg:
            if arg.type_list_attr:
                flat.extend(node.attr[arg.type_list_attr].list.type)
                continue
            count = node.attr[arg.number_attr].i if arg.number_attr else 1
            flat.extend([arg.type or node.attr[arg.type_attr].type] * count)
        for name, index in wanted[node.name]:
            if index < len(flat) and flat[index]:
                dtypes[name] = flat[index] % 100  # reference types (TF1 variables) feed as their base type
    return dtypes


class _SessionRunner:
    """A `tf.compat.v1.Session` over the version's own graph, with callables cached per tensor set."""

    def __init__(self, session, graph, feed_dtypes: dict[str, int], *, run_in_caller_thread: bool = False) -> None:
        self._session = session
        self._graph = graph
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}
        self._dtypes = feed_dtypes
        self._lock = threading.Lock()
        self._run_in_caller_thread = run_in_caller_thread

    @classmethod
    def load(cls, path: Path, meta_graph: MetaGraphDef, config, *, run_in_caller_thread: bool = False) -> _SessionRunner:
        import tensorflow as tf

        _validate_saved_tensors(meta_graph)
        graph = tf.Graph()
        _import_graph(graph, meta_graph.graph_def)
        feeds = {info.name for sig in meta_graph.signature_def.values() for info in sig.inputs.values()}
        session = tf.compat.v1.Session(graph=graph, config=config)
        # With one inter-op thread there is no parallelism between ops to lose: running the
        # graph on the calling thread saves two thread hand-offs per call (about 50 us for a
        # small model), as TF's RunOptions.inter_op_thread_pool = -1 documents for simple graphs.
        inline = (run_in_caller_thread and config.inter_op_parallelism_threads == 1
                  and not config.session_inter_op_thread_pool)
        runner = cls(session, graph, _tensor_dtypes(meta_graph.graph_def, feeds), run_in_caller_thread=inline)
        try:
            assets = {
                asset.tensor_info.name: np.array(os.path.join(path, "assets", asset.filename).encode(), dtype=object)
                for asset in _asset_file_defs(meta_graph)
            }
            variables_index = path / "variables" / "variables.index"
            if variables_index.exists():
                logger.info("Restoring SavedModel bundle.")
                saver = meta_graph.saver_def
                checkpoint = {saver.filename_tensor_name: np.array(str(path / "variables" / "variables").encode(), dtype=object)}
                runner._run_once({**checkpoint, **assets}, saver.restore_op_name)
            else:
                logger.info("The specified SavedModel has no variables; no checkpoints were restored. "
                            "File does not exist: %s", variables_index)
            init_op = _init_op_name(path, meta_graph)
            if init_op:
                logger.info("Running initialization op on SavedModel bundle at path: %s", path)
                runner._run_once(assets, init_op)
        except BaseException:
            runner.close()
            raise
        return runner

    def _run_once(self, feeds: Mapping[str, np.ndarray], target: str) -> None:
        """loader.cc RunOnce: a callable made, run and released, so the session keeps nothing of it."""
        import tensorflow as tf
        from tensorflow.core.protobuf import config_pb2

        options = config_pb2.CallableOptions(feed=list(feeds), target=[target])
        try:
            callable_ = self._session._make_callable_from_options(options)
            try:
                callable_(*feeds.values())
            finally:
                del callable_  # releases the handle (ReleaseCallable)
        except tf.errors.OpError as exc:
            raise status_from_tf_error(exc) from exc

    def _callable(self, key: tuple[tuple[str, ...], tuple[str, ...]]):
        import tensorflow as tf
        from tensorflow.core.protobuf import config_pb2

        with self._lock:
            found = self._callables.get(key)
            if found is not None:
                return found
            options = config_pb2.CallableOptions(feed=list(key[0]), fetch=list(key[1]))
            if self._run_in_caller_thread:
                options.run_options.inter_op_thread_pool = -1
            try:
                made = self._session._make_callable_from_options(options)
            except tf.errors.OpError as exc:
                raise status_from_tf_error(exc) from exc
            self._callables[key] = made
            return made

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        import tensorflow as tf

        key = (tuple(feeds), tuple(fetches))
        callable_ = self._callables.get(key) or self._callable(key)
        try:
            values = callable_(*feeds.values())
        except tf.errors.OpError as exc:
            raise status_from_tf_error(exc) from exc
        except (TypeError, ValueError) as exc:  # a feed numpy cannot turn into a tensor
            raise StatusError(Code.INVALID_ARGUMENT, str(exc)) from exc
        # Scalars come back as numpy scalars (strings as bytes); callers get arrays like any
        # other fetch, strings as object arrays.
        return [v if isinstance(v, np.ndarray) else np.array(v, dtype=object if isinstance(v, bytes) else None)
                for v in values]

    def feed_dtype(self, name: str) -> int | None:
        return self._dtypes.get(name)

    def close(self) -> None:
        with self._lock:
            callables, self._callables = self._callables, {}
        callables.clear()  # each callable releases its handle while the session is still open
        session, self._session = self._session, None
        if session is not None:
            session.close()
        self._graph = None


# ------------------------------------------------------------------------------- TF Lite

# TfLiteTypeToTfType: the TF Lite tensor types TF Serving maps, as numpy dtype -> DataType enum.
_TFLITE_DTYPES: dict[Any, int] = {
    np.float32: 1, np.int32: 3, np.uint8: 4, np.int64: 9, np.bytes_: 7, np.object_: 7, np.bool_: 10,
    np.int16: 5, np.complex64: 8, np.int8: 6,
}


def _legacy_tflite_name(name: str) -> str:
    # tflite_session.cc TfToTfLiteLegacyTensorName: early converters dropped the ":0".
    return name.split(":", 1)[0]


def _fix_tflite_name(names: Mapping[str, int], name: str) -> str:
    if name in names:
        return name
    legacy = _legacy_tflite_name(name)
    if legacy in names:
        return legacy
    raise StatusError(Code.INTERNAL, f"Unknown tensor '{name}'.")


def _tflite_signature_defs(model_bytes: bytes) -> dict[str, Any]:
    """The SignatureDefs stored in the model's `signature_defs_metadata` (tflite GetSignatureDefMap)."""
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(model_bytes, 0)
    for index in range(model.MetadataLength()):
        metadata = model.Metadata(index)
        if metadata.Name() != b"signature_defs_metadata":
            continue
        data = model.Buffers(metadata.Buffer()).DataAsNumpy().tobytes()
        signatures = {}
        entries = flexbuffers.GetRoot(data).AsMap
        for key in entries.Keys:
            name = key.AsKey
            signature = meta_graph_pb2.SignatureDef()
            signature.ParseFromString(entries[name].AsStringBytes)
            signatures[name] = signature
        return signatures
    return {}


class _TfLiteRunner:
    """TF Serving's TfLiteSession in Python: a pool of `tf.lite.Interpreter`s, one run each at a time."""

    def __init__(self, interpreters: list, inputs: dict[str, int], outputs: dict[str, int],
                 dtypes: dict[str, int]) -> None:
        self._pool: queue.SimpleQueue = queue.SimpleQueue()
        for interpreter in interpreters:
            self._pool.put(interpreter)
        self._size = len(interpreters)
        self._inputs = inputs
        self._outputs = outputs
        self._dtypes = dtypes

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        indices = []
        for name in feeds:
            try:
                indices.append(self._inputs[_fix_tflite_name(self._inputs, name)])
            except StatusError as exc:
                raise StatusError(Code.INTERNAL, f"{exc.message}\n\tMissing input TFLite tensor: {name}") from exc
        outputs = []
        for name in fetches:
            try:
                outputs.append(self._outputs[_fix_tflite_name(self._outputs, name)])
            except StatusError as exc:
                raise StatusError(Code.INTERNAL, f"Missing output TFLite tensor: {name}: {exc.message}") from exc
        interpreter = self._pool.get()
        try:
            details = {d["index"]: d for d in interpreter.get_input_details()}
            resized = False
            for index, array in zip(indices, feeds.values()):
                array = np.asarray(array)
                if tuple(details[index]["shape"]) != array.shape:
                    interpreter.resize_tensor_input(index, list(array.shape))
                    resized = True
            if resized:
                interpreter.allocate_tensors()
            for index, array in zip(indices, feeds.values()):
                interpreter.set_tensor(index, np.asarray(array))
            interpreter.invoke()
            return [np.array(interpreter.get_tensor(index)) for index in outputs]
        except (ValueError, RuntimeError) as exc:
            raise StatusError(Code.INTERNAL, f"Failed to invoke TfLite interpreter: {exc}") from exc
        finally:
            self._pool.put(interpreter)

    def feed_dtype(self, name: str) -> int | None:
        return self._dtypes.get(name, self._dtypes.get(_legacy_tflite_name(name)))

    def close(self) -> None:
        # Called only once no run holds an interpreter (Servable leases): drop them all.
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                return


def _load_tflite(model_path: Path, options: BundleOptions) -> tuple[_TfLiteRunner, dict[str, SignatureDef]]:
    """TfLiteSession::Create: interpreters, tensor maps and the SignatureDefs TF Serving reports."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    try:
        model_bytes = model_path.read_bytes()
    except OSError as exc:
        raise StatusError(Code.NOT_FOUND, f"{model_path}; {exc.strerror}") from exc
    interpreters = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice, once per interpreter
        for _ in range(max(1, options.num_tflite_pools)):
            try:
                # One thread per interpreter, as TF Serving's pool: requests run in parallel instead.
                interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)
                interpreter.allocate_tensors()
            except ValueError as exc:
                raise StatusError(Code.INVALID_ARGUMENT, f"Cannot build FlatBufferModel from buffer. ({exc})") from exc
            except RuntimeError as exc:
                raise StatusError(Code.INTERNAL, f"Cannot build Interpreter from buffer. ({exc})") from exc
            interpreters.append(interpreter)
    first = interpreters[0]

    def tensor_map(details: list[dict], what: str) -> tuple[dict[str, int], dict[str, Any]]:
        indices: dict[str, int] = {}
        infos: dict[str, Any] = {}
        for detail in details:
            name = detail["name"]
            if not name:
                raise StatusError(Code.INTERNAL, f"{what} name missing for tensor index: {detail['index']}")
            if name in indices:
                raise StatusError(Code.ALREADY_EXISTS, f"{what} tensor name: {name} has multiple indices")
            dtype = _TFLITE_DTYPES.get(np.dtype(detail["dtype"]).type)
            if dtype is None:
                raise StatusError(Code.INTERNAL, f"Unknown TfLite type: {detail['dtype']}")
            info = meta_graph_pb2.TensorInfo(name=name, dtype=dtype)
            for size in detail["shape"]:
                info.tensor_shape.dim.add(size=int(size))
            indices[name] = int(detail["index"])
            infos[name] = info
        return indices, infos

    inputs, input_infos = tensor_map(first.get_input_details(), "Input")
    outputs, output_infos = tensor_map(first.get_output_details(), "Output")
    try:
        signatures = _tflite_signature_defs(model_bytes)
    except Exception as exc:  # a metadata blob that is not a SignatureDef map
        raise StatusError(Code.INVALID_ARGUMENT, f"Invalid SignatureDefs found in TfLite model: {exc}") from exc
    if signatures:
        for signature in signatures.values():
            for kind, names in (("input", inputs), ("output", outputs)):
                for alias, info in getattr(signature, f"{kind}s").items():
                    try:
                        info.name = _fix_tflite_name(names, info.name)
                    except StatusError as exc:
                        raise StatusError(
                            exc.code, f"{exc.message}\n\tSignature {kind} {alias} references an unknown tensor"
                        ) from exc
    else:
        logger.warning("No signature def found in TFLite model. Generating one.")
        signature = meta_graph_pb2.SignatureDef(method_name=_PREDICT_METHOD)
        for name, info in input_infos.items():
            signature.inputs[_legacy_tflite_name(name)].CopyFrom(info)
        for name, info in output_infos.items():
            signature.outputs[_legacy_tflite_name(name)].CopyFrom(info)
        signatures = {_DEFAULT_SIGNATURE: signature}
    dtypes = {name: info.dtype for name, info in input_infos.items()}
    return _TfLiteRunner(interpreters, inputs, outputs, dtypes), signatures
