"""`check_saved_model`: will TensorFlow Serving load this version directory and run its signatures?

It repeats what `tensorflow_model_server` does with a version, in order, for any SavedModel
(tfstack's own, TF1 graphs, other exporters):

1. Load the MetaGraph with the given tags through the Session loader (restore op, init op):
   `tfstack.export._session.SessionModel`.
2. Replay `assets.extra/tf_serving_warmup_requests` as TF Serving's warmup does during the load
   (servables/tensorflow/saved_model_warmup_util.cc): at most 1000 records; Predict, Classify,
   Regress and MultiInference records run; session_run_log / predict_streamed_log fail the load.
3. Run every signature once. Inputs come from the warmup records, else from
   `assets.extra/sample_request.json`, else are synthesised from the SignatureDef: zeros of the
   declared dtype with unknown dimensions set small, and serialized tf.Examples built from the
   graph's ParseExample ops for string inputs that feed one. With synthesised inputs an
   INVALID_ARGUMENT from the graph only means the guess was wrong, so the signature is reported
   as not exercised instead of failed.
4. Check what TF Serving's Classify/Regress/Predict handlers require of each SignatureDef, with
   and without `--enable_signature_method_name_check` (servables/tensorflow/classifier.cc
   PreProcessClassification, regressor.cc PreProcessRegression, predict_util.cc VerifySignature).

A TF Lite directory (`model.tflite`, no saved_model.pb) is served by TF Serving only with
`--prefer_tflite_model`; it is checked with TensorFlow's TF Lite interpreter instead (load, then
every signature on synthesised inputs), and the report says so.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfstack.export._errors import VerificationError

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_FILE = "tf_serving_warmup_requests"
SAMPLE_REQUEST_FILE = "sample_request.json"
MAX_WARMUP_RECORDS = 1000  # saved_model_warmup_util.cc kMaxNumRecords
_INIT_OP = "__saved_model_init_op"
# How many rows synthesised inputs have when the batch dimension is unknown.
_SYNTH_BATCH = 2

OK = "ok"
FAILED = "failed"
NOT_EXERCISED = "not exercised"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SignatureCheck:
    """What happened to one signature.

    status is "ok", "failed" or "not exercised"; `inputs` says where the inputs came from;
    `detail` is the one-line reason for a failure (or for not exercising it); `notes` are
    findings that do not fail the check (with `problems` they would under the method-name check).
    """

    signature_name: str
    method_name: str
    status: str
    inputs: str = ""
    detail: str = ""
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckReport:
    """The outcome of `check_saved_model` for one version directory."""

    path: Path
    format: str  # "saved_model" or "tflite"
    tags: tuple[str, ...]
    method_name_check: bool
    load_error: str | None = None
    load_seconds: float = 0.0
    warmup: str = ""
    warmup_error: str | None = None
    signatures: tuple[SignatureCheck, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def failures(self) -> list[str]:
        """One line per reason this version would not serve, empty if it would."""
        lines = []
        if self.load_error:
            lines.append(self.load_error)
        if self.warmup_error:
            lines.append(self.warmup_error)
        for check in self.signatures:
            if check.status == FAILED:
                lines.append(f"signature {check.signature_name!r}: {check.detail}")
            if self.method_name_check:
                lines.extend(f"signature {check.signature_name!r}: {p}" for p in check.problems)
        return lines

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def not_exercised(self) -> list[SignatureCheck]:
        return [c for c in self.signatures if c.status == NOT_EXERCISED]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "tags": list(self.tags),
            "ok": self.ok,
            "method_name_check": self.method_name_check,
            "load_error": self.load_error,
            "load_seconds": round(self.load_seconds, 3),
            "warmup": self.warmup,
            "warmup_error": self.warmup_error,
            "failures": self.failures,
            "notes": list(self.notes),
            "signatures": [dataclasses.asdict(c) | {"notes": list(c.notes), "problems": list(c.problems)} for c in self.signatures],
        }


def check_saved_model(
    path: str | Path,
    *,
    tags: Sequence[str] = ("serve",),
    method_name_check: bool = False,
    inputs: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> CheckReport:
    """Load `path` the way TF Serving does and run every signature; see the module docstring.

    Args:
        path: a version directory (SavedModel or TF Lite).
        tags: the MetaGraph tags (TF Serving's --saved_model_tags).
        method_name_check: fail on what --enable_signature_method_name_check would refuse.
        inputs: signature name -> inputs to use for that signature (before any other source).

    Returns:
        A CheckReport; `report.ok` tells whether TF Serving would load and serve it.
    """
    path = Path(path)
    tags = tuple(tags)
    if not path.is_dir():
        raise ValueError(f"path must be a version directory. Received: {path} (not a directory)")
    has_saved_model = (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()
    if not has_saved_model and (path / "model.tflite").is_file():
        return _check_tflite(path, tags=tags, method_name_check=method_name_check)
    notes = []
    if not has_saved_model:
        return CheckReport(
            path=path, format="saved_model", tags=tags, method_name_check=method_name_check,
            load_error=_not_a_saved_model(path),
        )
    if (path / "model.tflite").is_file():
        notes.append("model.tflite is present too: TF Serving loads it instead only with --prefer_tflite_model.")
    if (path / "assets.extra" / "saved_model_config.pb").is_file():
        notes.append("assets.extra/saved_model_config.pb is present: TF Serving applies its session/graph options, this check does not.")

    import tensorflow  # noqa: F401  (imported first so load_seconds times the load, not the import)

    from tfstack.export import _session

    start = time.perf_counter()
    try:
        model = _session.SessionModel(path, tags=tags)
    except VerificationError as exc:
        return CheckReport(
            path=path, format="saved_model", tags=tags, method_name_check=method_name_check,
            load_error=str(exc), load_seconds=time.perf_counter() - start, notes=tuple(notes),
        )
    load_seconds = time.perf_counter() - start
    with model:
        signature_defs = {k: v for k, v in model.signature_defs.items() if k != _INIT_OP}
        if not signature_defs:
            notes.append("The MetaGraph has no SignatureDefs: TF Serving loads it but has nothing to serve.")
        runner = _Runner(model, path)
        warmup_text, warmup_error, warmup_inputs = runner.replay_warmup()
        sources: dict[str, tuple[str, dict[str, np.ndarray]]] = {}
        for name, given in (inputs or {}).items():
            sources[name] = ("given inputs", dict(given))
        for name, item in warmup_inputs.items():
            sources.setdefault(name, item)
        for name, item in _sample_request_inputs(path, signature_defs).items():
            sources.setdefault(name, item)
        checks = []
        for name in sorted(signature_defs):
            checks.append(runner.check_signature(name, signature_defs[name], sources.get(name)))
    return CheckReport(
        path=path, format="saved_model", tags=tags, method_name_check=method_name_check,
        load_seconds=load_seconds, warmup=warmup_text, warmup_error=warmup_error,
        signatures=tuple(checks), notes=tuple(notes),
    )


def _not_a_saved_model(path: Path) -> str:
    found = sorted(p.name for p in path.iterdir())[:8]
    if (path / "export.meta").is_file() or (path / "checkpoint").is_file():
        return (
            f"{path} has no saved_model.pb or saved_model.pbtxt: it looks like a pre-SavedModel SessionBundle "
            f"export (export.meta/checkpoint), which TF Serving no longer loads. Re-export it as a SavedModel. "
            f"Found: {found}"
        )
    return f"{path} has no saved_model.pb or saved_model.pbtxt, so TF Serving cannot load it. Found: {found or 'nothing'}"


class _Runner:
    """Runs signatures of one loaded SessionModel and judges the results."""

    def __init__(self, model: Any, path: Path) -> None:
        self.model = model
        self.path = path
        self._example_features: dict[str, tuple[Any, tuple[int, ...]]] | None = None

    # ---- warmup ---------------------------------------------------------------------------

    def replay_warmup(self) -> tuple[str, str | None, dict[str, tuple[str, dict[str, np.ndarray]]]]:
        """Replay the warmup file like TF Serving's load does; return (summary, error, inputs seen)."""
        warmup_path = self.path / "assets.extra" / WARMUP_FILE
        if not warmup_path.is_file():
            return "no warmup file (TF Serving loads without warmup)", None, {}
        try:
            records = _read_tfrecords(warmup_path)
        except VerificationError as exc:
            return "", str(exc), {}
        if len(records) > MAX_WARMUP_RECORDS:
            return "", (
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {warmup_path} "
                f"({len(records)} records): TF Serving fails the load."
            ), {}
        from tensorflow_serving.apis import prediction_log_pb2

        seen: dict[str, tuple[str, dict[str, np.ndarray]]] = {}
        replayed = 0
        for index, record in enumerate(records, start=1):
            log = prediction_log_pb2.PredictionLog()
            try:
                log.ParseFromString(record)
            except Exception as exc:
                return "", f"Failed to parse warmup record {index} from {warmup_path}: {exc}", seen
            kind = log.WhichOneof("log_type")
            if kind is None:
                continue
            try:
                calls = _warmup_calls(log, kind, self.model.signature_defs)
            except VerificationError as exc:
                return "", f"warmup record {index}: {exc}", seen
            for signature_name, feeds, api in calls:
                try:
                    outputs = self.model.run(signature_name, feeds)
                    if api in ("classify", "regress"):
                        _check_api_outputs(api, signature_name, outputs, len(feeds[next(iter(feeds))]))
                except VerificationError as exc:
                    return "", f"warmup record {index} ({api} on {signature_name!r}) fails, so TF Serving fails the load: {exc}", seen
                seen.setdefault(signature_name, (f"warmup record {index}", feeds))
            replayed += 1
        return f"{replayed} warmup record(s) replayed as TF Serving does at load", None, seen

    # ---- signatures -----------------------------------------------------------------------

    def check_signature(self, name: str, signature: Any, source: tuple[str, dict[str, np.ndarray]] | None) -> SignatureCheck:
        import tensorflow as tf

        takes_examples = "inputs" in signature.inputs and self._tensor_type(signature.inputs["inputs"])[0] == tf.string
        notes, problems = _method_findings(signature, takes_examples=takes_examples)
        method = signature.method_name
        unsupported = [a for a, info in signature.inputs.items() if info.WhichOneof("encoding") != "name"]
        unsupported += [a for a, info in signature.outputs.items() if info.WhichOneof("encoding") != "name"]
        if unsupported:
            return SignatureCheck(
                signature_name=name, method_name=method, status=NOT_EXERCISED, notes=tuple(notes), problems=tuple(problems),
                detail=f"tensors {sorted(unsupported)} are sparse/composite; TF Serving's Predict only feeds and fetches dense tensors by name",
            )
        examples_api = _examples_api(signature)
        attempts: list[tuple[str, dict[str, np.ndarray]]] = []
        if source is None:
            # Unknown-rank inputs are tried as a small vector, then as scalars.
            for scalar in (False, True):
                try:
                    feeds, described = self._synthesise(signature, scalar_unknown_rank=scalar)
                except _CannotSynthesise as exc:
                    return SignatureCheck(signature_name=name, method_name=method, status=NOT_EXERCISED, detail=str(exc),
                                          notes=tuple(notes), problems=tuple(problems))
                if not attempts or attempts[-1][1].keys() != feeds.keys() or any(
                    np.shape(attempts[-1][1][k]) != np.shape(v) for k, v in feeds.items()
                ):
                    attempts.append((f"synthesised ({described})", feeds))
        else:
            attempts.append(source)
        for attempt, (origin, feeds) in enumerate(attempts, start=1):
            try:
                outputs = self.model.run(name, feeds)
                inputs_tensor = feeds.get("inputs")
                if examples_api and inputs_tensor is not None and np.asarray(inputs_tensor).dtype == object:
                    _check_api_outputs(examples_api, name, outputs, len(np.asarray(inputs_tensor).reshape(-1)))
            except VerificationError as exc:
                text = str(exc)
                if source is None and _is_input_rejection(exc):
                    if attempt < len(attempts):
                        continue
                    return SignatureCheck(
                        signature_name=name, method_name=method, status=NOT_EXERCISED, inputs=origin,
                        detail=f"the graph rejected synthesised inputs ({text}); add warmup records to check it with real ones",
                        notes=tuple(notes), problems=tuple(problems),
                    )
                return SignatureCheck(signature_name=name, method_name=method, status=FAILED, inputs=origin, detail=text,
                                      notes=tuple(notes), problems=tuple(problems))
            break
        return SignatureCheck(signature_name=name, method_name=method, status=OK, inputs=origin,
                              notes=tuple(notes), problems=tuple(problems))

    def _synthesise(self, signature: Any, *, scalar_unknown_rank: bool = False) -> tuple[dict[str, np.ndarray], str]:
        import tensorflow as tf

        feeds: dict[str, np.ndarray] = {}
        described = []
        for alias, info in sorted(signature.inputs.items()):
            dtype, shape_proto = self._tensor_type(info)
            # Serialized tf.Examples where TF Serving's Classify/Regress would send them.
            wants_examples = alias == "inputs" or _examples_api(signature) is not None
            if dtype == tf.string and wants_examples and self._features():
                rows = _SYNTH_BATCH
                feeds[alias] = np.array(self._examples(rows), dtype=object)
                described.append(f"{alias}: {rows} tf.Examples")
                continue
            shape = () if scalar_unknown_rank and shape_proto.unknown_rank else _synthetic_shape(shape_proto)
            if dtype == tf.string:
                feeds[alias] = np.full(shape, b"", dtype=object)
            elif dtype.is_numpy_compatible and (dtype.is_floating or dtype.is_integer or dtype.is_bool or dtype.is_complex):
                feeds[alias] = np.zeros(shape, dtype=dtype.as_numpy_dtype)
            else:
                raise _CannotSynthesise(f"input {alias!r} has dtype {dtype.name}, which cannot be synthesised; add warmup records")
            described.append(f"{alias}: {dtype.name}{list(shape)}")
        return feeds, ", ".join(described) or "no inputs"

    def _tensor_type(self, info: Any) -> tuple[Any, Any]:
        """(dtype, TensorShapeProto) of a fed tensor: the graph's tensor wins over the SignatureDef.

        Hand-made SignatureDefs can be wrong (TF Serving's own half_plus_three declares its
        serialized-Example input DT_FLOAT, shape []); the session feeds the graph tensor, so
        that is what counts.
        """
        import tensorflow as tf
        from tensorflow.core.framework import tensor_shape_pb2

        tensor = self.model.tensor(info.name)
        if tensor is not None:
            return tensor.dtype.base_dtype, tensor.shape.as_proto()
        shape = info.tensor_shape if info.HasField("tensor_shape") else tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
        return tf.dtypes.as_dtype(info.dtype).base_dtype, shape

    def _features(self) -> dict[str, tuple[Any, tuple[int, ...]]]:
        if self._example_features is None:
            self._example_features = _example_features(self.model.meta_graph)
        return self._example_features

    def _examples(self, rows: int) -> list[bytes]:
        import tensorflow as tf

        examples = []
        for _ in range(rows):
            feature_map = {}
            for key, (dtype, shape) in self._features().items():
                size = int(np.prod(shape)) if shape else 1
                if dtype == tf.string:
                    feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""] * size))
                elif dtype.is_integer:
                    feature = tf.train.Feature(int64_list=tf.train.Int64List(value=[0] * size))
                else:
                    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * size))
                feature_map[key] = feature
            examples.append(tf.train.Example(features=tf.train.Features(feature=feature_map)).SerializeToString())
        return examples


class _CannotSynthesise(Exception):
    pass


def _synthetic_shape(shape_proto: Any) -> tuple[int, ...]:
    if shape_proto.unknown_rank:
        return (_SYNTH_BATCH,)
    dims = []
    for index, dim in enumerate(shape_proto.dim):
        dims.append(int(dim.size) if dim.size >= 0 else (_SYNTH_BATCH if index == 0 else 1))
    return tuple(dims)


def _is_input_rejection(exc: VerificationError) -> bool:
    cause = exc.__cause__
    import tensorflow as tf

    return isinstance(cause, (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError, ValueError))


def _example_features(meta_graph: Any) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """Dense features (key -> (dtype, shape)) that the graph's ParseExample ops read.

    The union over every parse op in the graph and its function library: extra features in an
    Example are ignored by parse ops, so one set of Examples serves every signature.
    """
    import tensorflow as tf

    features: dict[str, tuple[Any, tuple[int, ...]]] = {}
    scopes = [list(meta_graph.graph_def.node)] + [list(f.node_def) for f in meta_graph.graph_def.library.function]
    for nodes in scopes:
        by_name = {n.name: n for n in nodes}
        for node in nodes:
            if node.op not in ("ParseExample", "ParseExampleV2", "ParseSingleExample"):
                continue
            types = [tf.dtypes.as_dtype(t) for t in node.attr["Tdense"].list.type]
            shapes = [
                tuple(1 if d.size < 0 else int(d.size) for d in s.dim) if not s.unknown_rank else (1,)
                for s in node.attr["dense_shapes"].list.shape
            ]
            if node.op == "ParseExampleV2":
                keys = _const_strings(by_name, node.input[3])
            elif node.op == "ParseExample":
                n_sparse = node.attr["Nsparse"].i
                keys = [k for name in node.input[2 + n_sparse: 2 + n_sparse + len(types)] for k in _const_strings(by_name, name)]
            else:
                keys = [k.decode() for k in node.attr["dense_keys"].list.s]
            for key, dtype, shape in zip(keys, types, shapes):
                features.setdefault(key, (dtype, shape))
    return features


def _const_strings(by_name: dict[str, Any], input_name: str) -> list[str]:
    import tensorflow as tf

    node = by_name.get(input_name.lstrip("^").split(":")[0])
    if node is None or node.op != "Const":
        return []
    values = tf.make_ndarray(node.attr["value"].tensor)
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)]


def _read_tfrecords(path: Path) -> list[bytes]:
    import tensorflow as tf

    try:
        return [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    except tf.errors.OpError as exc:
        first = (str(exc.message).strip().splitlines() or [""])[0]
        raise VerificationError(
            f"{first}. Please verify your warmup data is in TFRecord format ({path}); TF Serving fails the load."
        ) from exc


def _warmup_calls(log: Any, kind: str, signature_defs: Mapping[str, Any]) -> list[tuple[str, dict[str, np.ndarray], str]]:
    """The (signature, feeds, api) runs one warmup record makes, as TF Serving's replay does."""
    import tensorflow as tf

    if kind in ("session_run_log", "predict_streamed_log"):
        number = {"session_run_log": 5, "predict_streamed_log": 7}[kind]
        raise VerificationError(f"Unsupported log_type for warmup: {number} ({kind}); TF Serving fails the load.")
    request = getattr(log, kind).request
    if kind == "predict_log":
        name = request.model_spec.signature_name or "serving_default"
        _require(signature_defs, name)
        feeds = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        return [(name, feeds, "predict")]
    examples = _serialized_examples(request.input)
    if kind == "multi_inference_log":
        calls = []
        for task in request.tasks:
            name = task.model_spec.signature_name or "serving_default"
            _require(signature_defs, name)
            api = {CLASSIFY_METHOD: "classify", REGRESS_METHOD: "regress"}.get(task.method_name)
            if api is None:
                raise VerificationError(f"Unsupported signature method_name: {task.method_name}")
            calls.append((name, {"inputs": examples}, api))
        return calls
    name = request.model_spec.signature_name or "serving_default"
    _require(signature_defs, name)
    api = "classify" if kind == "classify_log" else "regress"
    reason = _structure_error(api, signature_defs[name])
    if reason:
        raise VerificationError(f"{api} on {name!r}: {reason}")
    return [(name, {"inputs": examples}, api)]


def _require(signature_defs: Mapping[str, Any], name: str) -> None:
    if name not in signature_defs:
        raise VerificationError(f"No signature was found with the name: {name}")


def _serialized_examples(model_input: Any) -> np.ndarray:
    which = model_input.WhichOneof("kind")
    if which == "example_list":
        values = [e.SerializeToString() for e in model_input.example_list.examples]
    elif which == "example_list_with_context":
        context = model_input.example_list_with_context.context.SerializeToString()
        # Serialized protos concatenate as a merge: TF Serving prepends the context the same way.
        values = [context + e.SerializeToString() for e in model_input.example_list_with_context.examples]
    else:
        raise VerificationError("Input is empty.")
    if not values:
        raise VerificationError("Input is empty.")
    return np.array(values, dtype=object)


def _sample_request_inputs(path: Path, signature_defs: Mapping[str, Any]) -> dict[str, tuple[str, dict[str, np.ndarray]]]:
    """Inputs from tfstack's assets.extra/sample_request.json (a REST predict body), if usable."""
    import tensorflow as tf

    request_path = path / "assets.extra" / SAMPLE_REQUEST_FILE
    try:
        body = json.loads(request_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        return {}
    name = body.get("signature_name") or "serving_default"
    signature = signature_defs.get(name)
    if signature is None or set(body["inputs"]) != set(signature.inputs):
        return {}
    feeds = {}
    try:
        for alias, value in body["inputs"].items():
            dtype = tf.dtypes.as_dtype(signature.inputs[alias].dtype).base_dtype
            feeds[alias] = _decode_json(value) if dtype == tf.string else np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        return {}
    return {name: (f"assets.extra/{SAMPLE_REQUEST_FILE}", feeds)}


def _decode_json(value: Any) -> np.ndarray:
    import base64

    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(v) for v in item]
        if isinstance(item, dict) and "b64" in item:
            return base64.b64decode(item["b64"])
        return str(item).encode("utf-8")

    return np.array(convert(value), dtype=object)


# ---- TF Serving's per-API requirements on a SignatureDef ------------------------------------

def _structure_error(api: str, signature: Any) -> str | None:
    """TF Serving's PreProcessClassification / PreProcessRegression checks (message texts as TF Serving's)."""
    if len(signature.inputs) != 1:
        return "Expected one input Tensor."
    if api == "classify":
        if len(signature.outputs) not in (1, 2):
            return f"Expected one or two output Tensors, found {len(signature.outputs)}"
        if "inputs" not in signature.inputs:
            return "No classification inputs found in SignatureDef"
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            return 'Expected classification signature outputs to contain at least one of "classes" or "scores".'
        return None
    if len(signature.outputs) != 1:
        return "Expected one output Tensor."
    if "inputs" not in signature.inputs:
        return "No regression inputs found in SignatureDef"
    if "outputs" not in signature.outputs:
        return "No regression outputs found in SignatureDef"
    return None


def _examples_api(signature: Any) -> str | None:
    """"classify"/"regress" when the Classify/Regress API would run this signature, else None."""
    if signature.method_name == CLASSIFY_METHOD:
        return "classify"
    if signature.method_name == REGRESS_METHOD:
        return "regress"
    return None


def _method_findings(signature: Any, *, takes_examples: bool) -> tuple[list[str], list[str]]:
    """(notes, problems): problems are what --enable_signature_method_name_check makes fail."""
    notes: list[str] = []
    problems: list[str] = []
    method = signature.method_name
    if method not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        problems.append(
            f"Predict refuses it with --enable_signature_method_name_check (predict_util.cc VerifySignature): "
            f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, {CLASSIFY_METHOD}, "
            f"{REGRESS_METHOD}}}. Was: {method}"
        )
    for api, api_method in (("classify", CLASSIFY_METHOD), ("regress", REGRESS_METHOD)):
        reason = _structure_error(api, signature)
        if method == api_method:
            if reason:
                # Fails whatever the flag: the handler's own structure check refuses it.
                problems.append(f"{api.capitalize()} refuses it: {reason}")
                notes.append(f"method_name is {api_method} but {api.capitalize()} refuses it: {reason}")
            elif not takes_examples:
                notes.append(
                    f"{api.capitalize()} would feed serialized tf.Examples into input 'inputs', which is not DT_STRING; "
                    "only Predict can run it."
                )
        elif reason is None and takes_examples:
            message = (
                f"{api.capitalize()} accepts it only while --enable_signature_method_name_check is off: "
                f"Expected {'classification' if api == 'classify' else 'regression'} signature method_name to be "
                f"{api_method}. Was: {method}"
            )
            notes.append(message)
            problems.append(message)
    return notes, problems


def _check_api_outputs(api: str, name: str, outputs: Mapping[str, np.ndarray], examples: int) -> None:
    """TF Serving's PostProcessClassificationResult / PostProcessRegressionResult shape checks."""
    if api == "classify":
        classes, scores = outputs.get("classes"), outputs.get("scores")
        for alias, value in (("classes", classes), ("scores", scores)):
            if value is None:
                continue
            if value.ndim != 2:
                raise VerificationError(
                    f"Signature {name!r} output {alias!r}: Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)}"
                )
            if value.shape[0] != examples:
                raise VerificationError(
                    f"Signature {name!r} output {alias!r}: Expected {alias} output batch size of {examples}. Got {value.shape[0]}"
                )
        if classes is not None and scores is not None and classes.shape != scores.shape:
            raise VerificationError(
                f"Signature {name!r}: Tensors class and score should match in shape; {list(classes.shape)} vs {list(scores.shape)}"
            )
        if scores is not None and scores.dtype != np.float32:
            raise VerificationError(f"Signature {name!r}: Expected scores Tensor of DT_FLOAT. Got {scores.dtype}")
        return
    values = outputs.get("outputs")
    if values is None:
        raise VerificationError(f"Signature {name!r}: No regression outputs found")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise VerificationError(
            f"Signature {name!r}: Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {list(values.shape)}"
        )
    if values.shape[0] != examples:
        raise VerificationError(f"Signature {name!r}: Input batch size did not match output batch size: {examples} vs. {values.shape[0]}")
    if values.dtype != np.float32:
        raise VerificationError(f"Signature {name!r}: Expected output Tensor of DT_FLOAT. Got {values.dtype}")


# ---- TF Lite ---------------------------------------------------------------------------------

def _check_tflite(path: Path, *, tags: tuple[str, ...], method_name_check: bool) -> CheckReport:
    import warnings

    import tensorflow as tf

    notes = (
        "TF Lite model (model.tflite, no saved_model.pb): TF Serving serves it only with --prefer_tflite_model. "
        "Checked with TensorFlow's TF Lite interpreter: it loads, and each SignatureDef (from the flatbuffer's "
        "signature_defs_metadata, else the whole graph as serving_default, as tflite_session.cc does) runs on zeros. "
        "Not checked: TF Serving's own TF Lite session (its op resolver and interpreter pools).",
    )
    model_file = path / "model.tflite"
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            interpreter = tf.lite.Interpreter(model_path=str(model_file))
        interpreter.allocate_tensors()
        signature_defs = _tflite_signature_defs(model_file)
    except Exception as exc:
        return CheckReport(path=path, format="tflite", tags=tags, method_name_check=method_name_check,
                           load_error=f"{model_file} does not load in the TF Lite interpreter: {type(exc).__name__}: {exc}",
                           notes=notes)
    load_seconds = time.perf_counter() - start
    tensors = {d["name"]: d for d in interpreter.get_tensor_details()}
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if not signature_defs:
        signature_defs = {"serving_default": None}
    checks = []
    for name, signature in sorted(signature_defs.items()):
        method = signature.method_name if signature is not None else PREDICT_METHOD
        if signature is None:
            wanted = [d["name"] for d in outputs]
            origin = "synthesised (zeros), the whole graph: the flatbuffer has no SignatureDefs"
        else:
            wanted = [info.name.split(":")[0] for info in signature.outputs.values()]
            origin = "synthesised (zeros)"
            fed = [info.name.split(":")[0] for info in signature.inputs.values()]
            missing = sorted(set(fed + wanted) - set(tensors))
            if missing:
                checks.append(SignatureCheck(signature_name=name, method_name=method, status=FAILED, inputs=origin,
                                             detail=f"SignatureDef names tensors {missing} that are not in the flatbuffer"))
                continue
        try:
            for info in inputs:
                interpreter.set_tensor(info["index"], np.zeros(info["shape"], dtype=info["dtype"]))
            interpreter.invoke()
            for tensor in wanted:
                interpreter.get_tensor(tensors[tensor]["index"])
        except Exception as exc:
            checks.append(SignatureCheck(signature_name=name, method_name=method, status=FAILED, inputs=origin,
                                         detail=f"{type(exc).__name__}: {exc}"))
        else:
            checks.append(SignatureCheck(signature_name=name, method_name=method, status=OK, inputs=origin))
    return CheckReport(path=path, format="tflite", tags=tags, method_name_check=method_name_check,
                       load_seconds=load_seconds, signatures=tuple(checks), notes=notes)


def _tflite_signature_defs(model_file: Path) -> dict[str, Any]:
    """SignatureDefs stored in the flatbuffer's `signature_defs_metadata` (a FlexBuffer map name -> SignatureDef)."""
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(model_file))
    for metadata in model.metadata or []:
        if metadata.name != b"signature_defs_metadata":
            continue
        root = flexbuffers.GetRoot(bytearray(model.buffers[metadata.buffer].data)).AsMap
        signatures = {}
        for key, value in zip(root.Keys, root.Values):
            raw = value.AsStringBytes if value.IsString else bytes(value.AsBlob)
            signatures[key.AsKey] = meta_graph_pb2.SignatureDef.FromString(bytes(raw))
        return signatures
    return {}
