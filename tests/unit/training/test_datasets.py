"""Every data source loads raw features with the right shapes and a seeded, stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfstack.training import DatasetError, TrainConfig, load_dataset

BUILTIN = [
    # name, feature, per-example shape, rows, task, classes
    ("digits", "pixels", (8, 8), 1797, "classification", 10),
    ("iris", "features", (4,), 150, "classification", 3),
    ("wine", "features", (13,), 178, "classification", 3),
    ("breast_cancer", "features", (30,), 569, "classification", 2),
    ("diabetes", "features", (10,), 442, "regression", 0),
]


@pytest.mark.parametrize(("name", "feature", "shape", "rows", "task", "classes"), BUILTIN)
def test_builtin_dataset_shapes_and_splits(name, feature, shape, rows, task, classes) -> None:
    ds = load_dataset(TrainConfig(dataset=name, validation_split=0.1, test_split=0.2))
    assert ds.name == name and ds.task == task and ds.num_classes == classes
    assert [(f.name, f.dtype, f.shape) for f in ds.features] == [(feature, "float32", shape)]
    sizes = [len(ds.train), len(ds.validation), len(ds.test)]
    assert sum(sizes) == rows
    assert sizes[2] == int(np.ceil(rows * 0.2)) and sizes[1] == int(np.ceil(rows * 0.1))
    for split in (ds.train, ds.validation, ds.test):
        assert split.inputs[feature].shape == (len(split),) + shape
        assert split.inputs[feature].dtype == np.float32
    assert ds.fingerprint.startswith("sha256:") and len(ds.fingerprint) == 7 + 64
    info = ds.info()
    assert info["n_train"] == sizes[0] and info["fingerprint"] == ds.fingerprint
    if task == "classification":
        assert ds.train.labels.dtype == np.int64
        # Stratified: each split's class proportions stay within a couple of rows of the whole's.
        whole = np.bincount(np.concatenate([ds.train.labels, ds.validation.labels, ds.test.labels])) / rows
        for split in (ds.train, ds.validation, ds.test):
            share = np.bincount(split.labels, minlength=classes) / len(split)
            assert np.all(np.abs(share - whole) <= 2.0 / len(split))
    else:
        assert ds.train.labels.dtype == np.float32


def test_digits_pixels_stay_raw() -> None:
    ds = load_dataset(TrainConfig())
    pixels = ds.train.inputs["pixels"]
    assert pixels.min() == 0.0 and pixels.max() == 16.0
    assert ds.class_names == tuple(str(d) for d in range(10))


def test_settings_can_be_given_as_keywords() -> None:
    ds = load_dataset(dataset="iris", test_split=0.4)
    assert ds.name == "iris" and len(ds.test) == 60
    with pytest.raises(TypeError, match="must be a TrainConfig"):
        load_dataset("iris")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Received: dataset='mnist'"):
        load_dataset(dataset="mnist")


def test_split_and_fingerprint_follow_the_seed() -> None:
    a = load_dataset(TrainConfig(dataset="wine", seed=1))
    b = load_dataset(TrainConfig(dataset="wine", seed=1))
    c = load_dataset(TrainConfig(dataset="wine", seed=2))
    np.testing.assert_array_equal(a.test.inputs["features"], b.test.inputs["features"])
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint
    assert not np.array_equal(a.test.labels, c.test.labels) or not np.array_equal(
        a.test.inputs["features"], c.test.inputs["features"]
    )


def test_csv_with_string_and_numeric_columns(people_csv: Path) -> None:
    ds = load_dataset(TrainConfig(csv_path=str(people_csv), target="label"))
    assert ds.name == "people_data"
    assert ds.task == "classification" and ds.class_names == ("no", "yes")
    assert [(f.name, f.dtype, f.shape) for f in ds.features] == [
        ("Age_years", "float32", ()),
        ("city", "string", ()),
        ("income", "float32", ()),
    ]
    assert set(ds.train.inputs["city"]) <= {"paris", "rome", "oslo"}
    assert ds.train.inputs["Age_years"].dtype == np.float32
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 90


def test_csv_numeric_target_becomes_regression(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    rows = ["size,zone,price"] + [f"{i},{'ab'[i % 2]},{i * 1.5 + 0.25}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    ds = load_dataset(TrainConfig(csv_path=str(path), target="price"))
    assert ds.task == "regression" and ds.class_names == ()
    assert ds.train.labels.dtype == np.float32


def test_csv_integer_target_orders_classes_by_value(tmp_path: Path) -> None:
    path = tmp_path / "grades.csv"
    path.write_text("x,grade\n" + "".join(f"{i},{[2, 10, 3][i % 3]}\n" for i in range(30)))
    ds = load_dataset(TrainConfig(csv_path=str(path), target="grade"))
    assert ds.class_names == ("2", "3", "10")


def test_image_folder(image_dir: Path) -> None:
    ds = load_dataset(TrainConfig(image_dir=str(image_dir), image_size=(10, 12), color_mode="rgb"))
    assert ds.name == "shades" and ds.kind == "image" and ds.class_names == ("dark", "light")
    assert [(f.name, f.shape) for f in ds.features] == [("pixels", (10, 12, 3))]
    assert ds.train.inputs["pixels"].max() <= 255.0
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 24
    gray = load_dataset(TrainConfig(image_dir=str(image_dir), image_size=(8, 8)))
    assert gray.features[0].shape == (8, 8)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: TrainConfig(csv_path=str(d / "missing.csv"), target="y"), "CSV file not found"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,b\n1,2\n"), target="label"),
         "Target column 'label' is not in"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n" + "1,cat\n" * 20), target="y", task="regression"),
         "A regression target must be numeric, but column 'y' contains 'cat'"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", ""), target="y"), "no header row"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n"), target="y"), "no data rows"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n1,2,3\n"), target="y"), "row 2 has 3 cells"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "y\n1\n"), target="y"), "at least one feature column"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n1,x\n,y\n2,x\n"), target="y"),
         "Numeric CSV column 'a' is empty at row 3"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n" + "1,x\n" * 20 + "2,z\n"), target="y"),
         "at least 3 examples per class"),
        (lambda d: TrainConfig(csv_path=_write(d / "a.csv", "a,y\n1,x\n2,z\n3,x\n"), target="y"), "too few to split"),
        (lambda d: TrainConfig(dataset="diabetes", task="classification"),
         "'diabetes' is a regression dataset; it cannot be trained as classification"),
        (lambda d: TrainConfig(image_dir=str(d / "nope")), "Image folder not found"),
    ],
)
def test_bad_sources_raise_dataset_error(tmp_path: Path, make, expected: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(make(tmp_path))
    assert expected in str(info.value)


def test_image_folder_needs_two_classes_of_images(tmp_path: Path) -> None:
    (tmp_path / "only").mkdir()
    with pytest.raises(DatasetError, match="at least two classes"):
        load_dataset(TrainConfig(image_dir=str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no images"):
        load_dataset(TrainConfig(image_dir=str(tmp_path)))


def test_broken_image_is_named(image_dir: Path) -> None:
    (image_dir / "light" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset(TrainConfig(image_dir=str(image_dir)))
