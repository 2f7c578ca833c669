"""Keras models that take RAW features as a dict and carry their own preprocessing.

Normalization is adapted on the training split and string columns are looked up against the
training vocabulary inside the graph, so the exported model needs nothing from the client but
the raw values (no training/serving skew).
"""

from __future__ import annotations

import numpy as np

from tfstack.training._datasets import Dataset
from tfstack.training._errors import ModelError

DEFAULT_HIDDEN = {"perceptron": (), "mlp": (64,), "cnn": (128,)}


def resolve_model(model: str, hidden: tuple[int, ...] | None, dataset: Dataset) -> tuple[str, tuple[int, ...]]:
    """Pick the concrete model ("auto": cnn for images, mlp for tables) and its hidden sizes."""
    if model == "auto":
        model = "cnn" if dataset.kind == "image" else "mlp"
    if model == "cnn" and dataset.kind != "image":
        raise ModelError(
            f"A cnn needs image data (the digits dataset or --image-dir), but {dataset.name!r} is a table; "
            f"use --model mlp or perceptron. Received: model='cnn'"
        )
    return model, DEFAULT_HIDDEN[model] if hidden is None else hidden


def build_model(dataset: Dataset, *, model: str, hidden: tuple[int, ...], activation: str, seed: int):
    """Build the (uncompiled) functional model for `dataset`; preprocessing adapted on its train split."""
    import keras
    from keras import layers

    inputs = {
        f.name: keras.Input(shape=f.shape, dtype="string" if f.dtype == "string" else f.dtype, name=f.name)
        for f in dataset.features
    }
    if dataset.kind == "image":
        x = _image_stem(inputs["pixels"], dataset, model=model, seed=seed)
    else:
        x = _table_stem(inputs, dataset)
    for units in hidden:
        x = layers.Dense(units, activation=activation)(x)
        if model == "cnn":
            x = layers.Dropout(0.3, seed=seed)(x)
    if dataset.task == "classification":
        outputs = layers.Dense(dataset.num_classes, activation="softmax", name="probabilities")(x)
    else:
        # Predict in standardised units, then rescale: the first guess is the training mean, so the
        # optimiser does not spend epochs walking the bias up to e.g. 150 (diabetes).
        targets = np.asarray(dataset.train.labels, dtype=np.float64)
        scale = float(targets.std()) or 1.0
        x = layers.Dense(1)(x)
        outputs = layers.Rescaling(scale=scale, offset=float(targets.mean()), name="prediction")(x)
    return keras.Model(inputs=inputs, outputs=outputs, name=f"{dataset.name}_{model}")


def _image_stem(pixels, dataset: Dataset, *, model: str, seed: int):
    from keras import layers

    train = np.asarray(dataset.train.inputs["pixels"], dtype=np.float32)
    shape = tuple(train.shape[1:])
    grayscale = len(shape) == 2
    # One mean/variance for grayscale, one per channel for RGB: per-pixel statistics would divide
    # by ~0 on always-blank border pixels.
    norm = layers.Normalization(axis=None if grayscale else -1, name="normalize")
    norm.adapt(train if grayscale else train.reshape(-1, shape[-1]))
    x = norm(pixels)
    if model != "cnn":
        return layers.Flatten()(x)
    if grayscale:
        x = layers.Reshape(shape + (1,))(x)
    size = min(shape[0], shape[1])
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        if size >= 4:
            x = layers.MaxPooling2D(2)(x)
            size //= 2
    if size > 4:
        # Large images: average away the remaining spatial grid so the head stays small.
        return layers.GlobalAveragePooling2D()(x)
    return layers.Flatten()(x)


def _table_stem(inputs, dataset: Dataset):
    from keras import layers

    parts = []
    numeric = [f for f in dataset.features if f.dtype != "string"]
    if numeric:
        # A per-example scalar column becomes one column of the matrix the Normalization sees.
        tensors = [inputs[f.name] if f.shape else layers.Reshape((1,))(inputs[f.name]) for f in numeric]
        x = tensors[0] if len(tensors) == 1 else layers.Concatenate()(tensors)
        norm = layers.Normalization(axis=-1, name="normalize")
        n = len(dataset.train)
        norm.adapt(np.concatenate(
            [np.asarray(dataset.train.inputs[f.name], np.float32).reshape(n, -1) for f in numeric], axis=1
        ))
        parts.append(norm(x))
    for f in dataset.features:
        if f.dtype != "string":
            continue
        # "[UNK]" is StringLookup's out-of-vocabulary token; listing it too is an error, and it maps there anyway.
        vocabulary = sorted({str(v) for v in dataset.train.inputs[f.name]} - {"[UNK]"})
        lookup = layers.StringLookup(
            vocabulary=vocabulary, num_oov_indices=1, output_mode="one_hot", name=f"lookup_{f.name}"
        )
        parts.append(lookup(inputs[f.name]))
    return parts[0] if len(parts) == 1 else layers.Concatenate()(parts)
