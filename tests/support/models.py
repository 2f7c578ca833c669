"""Tiny SavedModels in the shape of TF Serving's own test models, built on demand.

`half_plus_two` mirrors `saved_model_half_plus_two_cpu` (spec §10): y = 0.5x + 2 with
predict, classify and regress signatures, so conformance tests can use the expected
values that TF Serving's own tests assert. Nothing here is committed as a binary.
"""

from __future__ import annotations

from pathlib import Path


def build_half_plus(path: Path, *, b: float = 2.0, c: float = 3.0) -> Path:
    """Write a half_plus_<b> SavedModel to `path` (the version directory itself).

    Signatures (as TF Serving's testdata):
      serving_default: x (float, any shape) -> y = 0.5x + b
      classify_x_to_y: inputs (serialized tf.Example, [N]) -> scores [N,1] = 0.5x + b
      regress_x_to_y:  inputs -> outputs [N,1] = 0.5x + b
      regress_x_to_y2: inputs -> outputs [N,1] = 0.5x + c
      regress_x2_to_y3: inputs -> outputs [N,1] = 0.5*x2 + c  (x2 defaults to 0.0)
    """
    import tensorflow as tf

    features = {
        "x": tf.io.FixedLenFeature([1], tf.float32),
        "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
    }
    features_x2_only = {"x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0])}
    examples = tf.TensorSpec([None], tf.string, name="inputs")

    class HalfPlus(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = tf.Variable(0.5)
            self.b = tf.Variable(b)
            self.c = tf.Variable(c)

        @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="x")])
        def predict(self, x):
            return {"y": self.a * x + self.b}

        @tf.function(input_signature=[examples])
        def classify_x_to_y(self, inputs):
            f = tf.io.parse_example(inputs, features)
            return {"scores": self.a * f["x"] + self.b}

        @tf.function(input_signature=[examples])
        def regress_x_to_y(self, inputs):
            f = tf.io.parse_example(inputs, features)
            return {"outputs": self.a * f["x"] + self.b}

        @tf.function(input_signature=[examples])
        def regress_x_to_y2(self, inputs):
            f = tf.io.parse_example(inputs, features)
            return {"outputs": self.a * f["x"] + self.c}

        @tf.function(input_signature=[examples])
        def regress_x2_to_y3(self, inputs):
            f = tf.io.parse_example(inputs, features_x2_only)
            return {"outputs": self.a * f["x2"] + self.c}

    module = HalfPlus()
    signatures = {
        "serving_default": module.predict,
        "classify_x_to_y": module.classify_x_to_y,
        "regress_x_to_y": module.regress_x_to_y,
        "regress_x_to_y2": module.regress_x_to_y2,
        "regress_x2_to_y3": module.regress_x2_to_y3,
    }
    path = Path(path)
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path


def build_half_plus_two_tf1(path: Path, *, b: float = 2.0, c: float = 3.0) -> Path:
    """Write a TF1-graph half_plus_<b> SavedModel shaped exactly like TF Serving's testdata.

    Unlike `build_half_plus` (a TF2 export, where every signature gets its own placeholder),
    this graph has one `tf_example:0` input shared by the classify/regress signatures, tensor
    names `x:0`/`y:0` with shape [-1, 1], and the classify/regress method names: the shape of
    `saved_model_half_plus_two_cpu` (spec §10), so metadata and MultiInference (several
    signatures over one input tensor) behave as in TF Serving's own tests.

    Signatures: serving_default (predict x -> y), classify_x_to_y (scores=y),
    regress_x_to_y (y), regress_x_to_y2 (0.5x + c), regress_x2_to_y3 (0.5*x2 + c),
    classify_x2_to_y3 (scores = 0.5*x2 + c).
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    path = Path(path)
    graph = tf.Graph()
    with graph.as_default():
        a_var = v1.Variable(0.5, name="a")
        b_var = v1.Variable(b, name="b")
        c_var = v1.Variable(c, name="c")
        serialized = v1.placeholder(tf.string, name="tf_example")
        parsed = tf.io.parse_example(
            serialized,
            {
                "x": tf.io.FixedLenFeature([1], tf.float32),
                "x2": tf.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        # TF Serving's testdata declares x and y as [-1, 1] while tf_example has unknown rank.
        x = tf.identity(tf.ensure_shape(parsed["x"], [None, 1]), name="x")
        x2 = tf.identity(tf.ensure_shape(parsed["x2"], [None, 1]), name="x2")
        y = tf.add(tf.multiply(a_var, x), b_var, name="y")
        y2 = tf.add(tf.multiply(a_var, x), c_var, name="y2")
        y3 = tf.add(tf.multiply(a_var, x2), c_var, name="y3")
        sig = v1.saved_model.signature_def_utils
        info = v1.saved_model.utils.build_tensor_info

        def regress(output):
            return sig.build_signature_def(
                {"inputs": info(serialized)}, {"outputs": info(output)}, "tensorflow/serving/regress"
            )

        def classify(scores):
            return sig.build_signature_def(
                {"inputs": info(serialized)}, {"scores": info(scores)}, "tensorflow/serving/classify"
            )

        signatures = {
            "serving_default": sig.build_signature_def({"x": info(x)}, {"y": info(y)}, "tensorflow/serving/predict"),
            "classify_x_to_y": classify(y),
            "regress_x_to_y": regress(y),
            "regress_x_to_y2": regress(y2),
            "regress_x2_to_y3": regress(y3),
            "classify_x2_to_y3": classify(y3),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()
    return path


def build_vocab_classifier_tf1(path: Path, labels: tuple[str, ...] = ("cat", "dog", "fish"),
                               *, init_collection: str = "legacy_init_op") -> Path:
    """A TF1-graph classifier whose class labels come from an asset file, the Estimator-era way.

    `assets/labels.txt` holds one label per line; a hash table reads it in the init op stored in
    the `init_collection` collection ("legacy_init_op" or "saved_model_main_op"), which only works
    if the loader feeds the asset's path to its placeholder. Signatures:
      serving_default (predict): x float [N] -> classes string [N, C] (every label), scores
          float [N, C] (softmax of x * [0, 1, 2, ...]), label_path string [] (the fed asset path);
      classify (classify): inputs serialized tf.Example with float x -> classes, scores.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    path = Path(path)
    source = path.parent / f".{path.name}-assets" / "labels.txt"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("\n".join(labels) + "\n")
    graph = tf.Graph()
    with graph.as_default():
        asset = tf.constant(str(source), name="labels_asset_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(asset, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                                          tf.string, tf.lookup.TextFileIndex.WHOLE_LINE),
            default_value="?",
        )
        seen_path = v1.Variable("", name="seen_label_path", trainable=False)
        init = tf.group(v1.tables_initializer(), seen_path.assign(asset), name="init_all")
        x = v1.placeholder(tf.float32, [None], name="x")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([], tf.float32)})
        ids = tf.range(len(labels), dtype=tf.int64)

        def head(values):
            scores = tf.nn.softmax(tf.expand_dims(values, 1) * tf.cast(ids, tf.float32), name=None)
            classes = tf.tile(tf.expand_dims(table.lookup(ids), 0), [tf.shape(values)[0], 1])
            return classes, scores

        classes, scores = head(x)
        example_classes, example_scores = head(parsed["x"])
        sig = v1.saved_model.signature_def_utils
        info = v1.saved_model.utils.build_tensor_info
        signatures = {
            "serving_default": sig.build_signature_def(
                {"x": info(x)},
                {"classes": info(classes), "scores": info(scores), "label_path": info(seen_path.read_value())},
                "tensorflow/serving/predict",
            ),
            "classify": sig.build_signature_def(
                {"inputs": info(serialized)}, {"classes": info(example_classes), "scores": info(example_scores)},
                "tensorflow/serving/classify",
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run([v1.global_variables_initializer(), v1.tables_initializer()])
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map=signatures,
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS), main_op=init,
            )
            builder.save()
    if init_collection != "saved_model_main_op":
        # TF 2's builder always writes main_op; older exports named the same op legacy_init_op.
        from tensorflow.core.protobuf import saved_model_pb2

        saved_model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
        collections = saved_model.meta_graphs[0].collection_def
        collections[init_collection].CopyFrom(collections["saved_model_main_op"])
        del collections["saved_model_main_op"]
        (path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    source.unlink()
    source.parent.rmdir()
    return path
