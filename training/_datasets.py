"""Datasets: scikit-learn's bundled sets, a user CSV or an image folder, split with a seed.

Features stay RAW here (pixel values 0..16 for digits, strings for CSV text columns): the
model carries its own preprocessing, so exactly these values are what clients send.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tfstack.training._config import TrainConfig
from tfstack.training._errors import DatasetError

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# A numeric CSV target with at most this many distinct integer values is taken as class labels.
_MAX_AUTO_CLASSES = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class Feature:
    """One model input: its signature name, dtype ("float32" or "string") and per-example shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Split:
    """Raw inputs (one array per feature, same first dimension) and their labels."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> "Split":
        return Split(inputs={k: v[index] for k, v in self.inputs.items()}, labels=self.labels[index])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dataset:
    """A loaded, split dataset.

    `kind` is "image" (one `pixels` input) or "table"; `task` is "classification" (labels are
    int64 class indices into `class_names`) or "regression" (float32 labels).
    """

    name: str
    source: str
    kind: str
    task: str
    features: tuple[Feature, ...]
    class_names: tuple[str, ...]
    train: Split
    validation: Split
    test: Split
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def info(self) -> dict[str, Any]:
        """JSON-able description for manifests: name, source, fingerprint and split sizes."""
        info: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "kind": self.kind,
            "task": self.task,
            "fingerprint": self.fingerprint,
            "n_train": len(self.train),
            "n_validation": len(self.validation),
            "n_test": len(self.test),
            "features": [{"name": f.name, "dtype": f.dtype, "shape": list(f.shape)} for f in self.features],
        }
        if self.task == "classification":
            info["n_classes"] = self.num_classes
            info["class_names"] = list(self.class_names)
        return info


def load_dataset(config: TrainConfig | None = None, **settings: Any) -> Dataset:
    """Load the data source named by `config` and split it into train/validation/test.

    Classification splits are stratified; regression splits are a seeded shuffle. The same
    config (including `seed`) always gives the same split.

    Args:
        config: the run's settings (only the data fields and `seed` matter here).
        **settings: TrainConfig fields to set on top of `config`, e.g. dataset="iris".

    Raises:
        DatasetError: unknown or unreadable source, missing column, bad values, too few rows.
        ConfigError: a setting has a bad value.

    Example:
        >>> ds = load_dataset(dataset="iris")
        >>> ds.train.inputs["features"].shape
        (105, 4)
    """
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"`config` must be a TrainConfig. Received: config={config!r}")
    config = dataclasses.replace(config or TrainConfig(), **settings) if settings else config or TrainConfig()
    if config.csv_path is not None:
        name, source, kind, features, inputs, labels, class_names, task = _load_csv(config)
    elif config.image_dir is not None:
        name, source, kind, features, inputs, labels, class_names, task = _load_image_dir(config)
    else:
        name, source, kind, features, inputs, labels, class_names, task = _load_builtin(config)
    if config.task != "auto" and config.task != task:
        raise DatasetError(
            f"Dataset {name!r} is a {task} dataset; it cannot be trained as {config.task}. Received: task={config.task!r}"
        )
    train, validation, test = _split(inputs, labels, task=task, config=config, name=name)
    return Dataset(
        name=name,
        source=source,
        kind=kind,
        task=task,
        features=features,
        class_names=class_names,
        train=train,
        validation=validation,
        test=test,
        fingerprint=fingerprint(train),
    )


def tensor_inputs(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Raw inputs as Keras takes them: string columns (object arrays of str) become tf.string tensors."""
    import tensorflow as tf

    return {
        k: tf.constant(v.astype(str).tolist(), dtype=tf.string) if v.dtype == object else v
        for k, v in inputs.items()
    }


def fingerprint(split: Split) -> str:
    """sha256 over the feature arrays (name, dtype, shape, bytes) and the labels of `split`."""
    digest = hashlib.sha256()
    for name in sorted(split.inputs):
        array = np.asarray(split.inputs[name])
        digest.update(f"{name}|{array.dtype.kind}|{array.shape}".encode())
        if array.dtype.kind in "OUS":
            # Strings have no fixed-width byte form; length-prefix each so ("ab","c") != ("a","bc").
            for value in array.reshape(-1):
                raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
                digest.update(len(raw).to_bytes(8, "little") + raw)
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    labels = np.ascontiguousarray(split.labels)
    digest.update(f"labels|{labels.dtype.str}|{labels.shape}".encode())
    digest.update(labels.tobytes())
    return "sha256:" + digest.hexdigest()


def _load_builtin(config: TrainConfig):
    from sklearn import datasets as sk

    name = config.source_name
    loader = {
        "digits": sk.load_digits,
        "iris": sk.load_iris,
        "wine": sk.load_wine,
        "breast_cancer": sk.load_breast_cancer,
        "diabetes": sk.load_diabetes,
    }[name]
    bunch = loader()
    source = f"sklearn.datasets.load_{name}"
    if name == "digits":
        pixels = np.asarray(bunch.images, dtype=np.float32)
        features = (Feature(name="pixels", dtype="float32", shape=tuple(pixels.shape[1:])),)
        inputs = {"pixels": pixels}
        kind = "image"
    else:
        table = np.asarray(bunch.data, dtype=np.float32)
        features = (Feature(name="features", dtype="float32", shape=(table.shape[1],)),)
        inputs = {"features": table}
        kind = "table"
    if name == "diabetes":
        return name, source, kind, features, inputs, np.asarray(bunch.target, np.float32), (), "regression"
    class_names = tuple(str(c) for c in bunch.target_names)
    return name, source, kind, features, inputs, np.asarray(bunch.target, np.int64), class_names, "classification"


def dataset_name(config: TrainConfig) -> str:
    """The dataset's name, which is also the default model name: the bundled name, CSV file stem or folder name."""
    if config.csv_path is not None:
        return sanitize_name(Path(config.csv_path).stem, fallback="csv")
    if config.image_dir is not None:
        return sanitize_name(Path(config.image_dir).resolve().name, fallback="images")
    return config.source_name


def sanitize_name(column: str, *, fallback: str = "column") -> str:
    """A TF-signature-safe input name for a CSV column: [A-Za-z0-9_], not starting with a digit."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", column.strip()).strip("_")
    if not name:
        name = fallback
    if name[0].isdigit():
        name = "c_" + name
    return name


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _load_csv(config: TrainConfig):
    path = Path(config.csv_path)
    if not path.is_file():
        raise DatasetError(f"CSV file not found or not a file. Received: csv_path={str(path)!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"Cannot read CSV file {str(path)!r}: {exc}") from exc
    if not header:
        raise DatasetError(f"CSV file has no header row. Received: csv_path={str(path)!r}")
    header = [h.strip() for h in header]
    if config.target not in header:
        raise DatasetError(
            f"Target column {config.target!r} is not in {str(path)!r}; expected one of {header}. "
            f"Received: target={config.target!r}"
        )
    if len(header) < 2:
        raise DatasetError(f"CSV file needs at least one feature column besides the target. Received: columns={header}")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError(
                f"CSV row {number} has {len(row)} cells; the header has {len(header)}. Received: row={row!r}"
            )
    if not rows:
        raise DatasetError(f"CSV file has a header but no data rows. Received: csv_path={str(path)!r}")

    columns = {h: [row[i].strip() for row in rows] for i, h in enumerate(header)}
    target_values = columns.pop(config.target)
    task = config.task
    target_numeric = all(_is_number(v) for v in target_values)
    if task == "regression" and not target_numeric:
        bad = next(v for v in target_values if not _is_number(v))
        raise DatasetError(
            f"A regression target must be numeric, but column {config.target!r} contains {bad!r}. "
            f"Use --task classification for labels. Received: target={config.target!r}"
        )
    if task == "auto":
        if target_numeric:
            values = np.asarray([float(v) for v in target_values])
            distinct = np.unique(values)
            integral = bool(np.all(values == np.round(values)))
            task = "classification" if integral and len(distinct) <= _MAX_AUTO_CLASSES else "regression"
        else:
            task = "classification"
    if task == "regression":
        labels = np.asarray([float(v) for v in target_values], dtype=np.float32)
        class_names: tuple[str, ...] = ()
    else:
        if any(v == "" for v in target_values):
            row = target_values.index("") + 2
            raise DatasetError(f"Target column {config.target!r} is empty at CSV row {row}. Received: value=''")
        if target_numeric:
            # Order numeric labels by value ("2" before "10"), not as strings.
            class_names = tuple(sorted(set(target_values), key=float))
        else:
            class_names = tuple(sorted(set(target_values)))
        index = {c: i for i, c in enumerate(class_names)}
        labels = np.asarray([index[v] for v in target_values], dtype=np.int64)

    features: list[Feature] = []
    inputs: dict[str, np.ndarray] = {}
    for column, values in columns.items():
        name = sanitize_name(column)
        if name in inputs:
            raise DatasetError(
                f"CSV columns {column!r} and another column both map to the input name {name!r}; rename one."
            )
        filled = [v for v in values if v != ""]
        if filled and all(_is_number(v) for v in filled):
            if len(filled) != len(values):
                row = values.index("") + 2
                raise DatasetError(
                    f"Numeric CSV column {column!r} is empty at row {row}; fill missing numbers. Received: value=''"
                )
            inputs[name] = np.asarray([float(v) for v in values], dtype=np.float32)
            features.append(Feature(name=name, dtype="float32", shape=()))
        else:
            inputs[name] = np.asarray(values, dtype=object)
            features.append(Feature(name=name, dtype="string", shape=()))
    return dataset_name(config), str(path), "table", tuple(features), inputs, labels, class_names, task


def _load_image_dir(config: TrainConfig):
    from PIL import Image, UnidentifiedImageError

    root = Path(config.image_dir)
    if not root.is_dir():
        raise DatasetError(f"Image folder not found or not a directory. Received: image_dir={str(root)!r}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DatasetError(
            "An image folder needs one subfolder per class and at least two classes. "
            f"Received: image_dir={str(root)!r} with {len(class_dirs)} subfolder(s)"
        )
    height, width = config.image_size
    mode = "L" if config.color_mode == "grayscale" else "RGB"
    images: list[np.ndarray] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"Class folder {str(class_dir)!r} has no images ({', '.join(_IMAGE_SUFFIXES)}).")
        for file in files:
            try:
                with Image.open(file) as image:
                    image = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                    images.append(np.asarray(image, dtype=np.float32))
            except (OSError, UnidentifiedImageError) as exc:
                raise DatasetError(f"Cannot read image {str(file)!r}: {exc}") from exc
            labels.append(index)
    pixels = np.stack(images)
    features = (Feature(name="pixels", dtype="float32", shape=tuple(pixels.shape[1:])),)
    class_names = tuple(p.name for p in class_dirs)
    return (
        dataset_name(config),
        str(root),
        "image",
        features,
        {"pixels": pixels},
        np.asarray(labels, dtype=np.int64),
        class_names,
        "classification",
    )


def _split(inputs, labels, *, task: str, config: TrainConfig, name: str) -> tuple[Split, Split, Split]:
    from sklearn.model_selection import train_test_split

    whole = Split(inputs=inputs, labels=labels)
    n = len(whole)
    n_test = math.ceil(n * config.test_split)
    n_validation = math.ceil(n * config.validation_split)
    n_classes = int(labels.max()) + 1 if task == "classification" else 0
    minimum = max(n_classes, 1)
    if n - n_test - n_validation < minimum or n_test < minimum or n_validation < minimum:
        raise DatasetError(
            f"Dataset {name!r} has {n} rows, too few to split into train/validation/test "
            f"with validation_split={config.validation_split} and test_split={config.test_split}"
            + (f" and {n_classes} classes." if n_classes else ".")
        )
    if task == "classification":
        counts = np.bincount(labels, minlength=n_classes)
        if counts.min() < 3:
            rare = int(np.argmin(counts))
            raise DatasetError(
                f"Stratified splitting needs at least 3 examples per class; class index {rare} of dataset "
                f"{name!r} has {int(counts.min())}."
            )
    index = np.arange(n)
    stratify = labels if task == "classification" else None
    try:
        rest, test_index = train_test_split(
            index, test_size=n_test, random_state=config.seed, stratify=stratify
        )
        train_index, validation_index = train_test_split(
            rest,
            test_size=n_validation,
            random_state=config.seed,
            stratify=labels[rest] if stratify is not None else None,
        )
    except ValueError as exc:
        raise DatasetError(f"Cannot split dataset {name!r} with the requested fractions: {exc}") from exc
    return whole.take(train_index), whole.take(validation_index), whole.take(test_index)
