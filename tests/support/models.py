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
