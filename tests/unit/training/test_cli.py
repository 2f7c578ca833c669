"""`tfstack train` bad input: one clear line, non-zero exit, no traceback, and no training started."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from tfstack.training.cli import train


def _run(args: list[str]):
    return CliRunner().invoke(train, args)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--dataset", "mnist"], "`dataset` must be one of digits, iris, wine, breast_cancer, diabetes. Received: dataset='mnist'"),
        (["--csv", "{tmp}/nope.csv", "--target", "y"], "CSV file not found or not a file. Received: csv_path="),
        (["--csv", "{csv}", "--target", "salary"], "Target column 'salary' is not in"),
        (["--csv", "{csv}", "--target", "label", "--task", "regression"],
         "A regression target must be numeric, but column 'label' contains"),
        (["--csv", "{csv}"], "needs the name of its target column (--target)"),
        (["--dataset", "iris", "--model", "cnn"], "A cnn needs image data"),
        (["--hidden", "64,abc"], "--hidden must be comma-separated positive layer sizes, e.g. 64,32. Received: hidden='64,abc'"),
        (["--hidden", "0"], "Received: hidden='0'"),
        (["--image-size", "big"], "Received: image_size='big'"),
        (["--optimizer", "lbfgs"], "Received: optimizer='lbfgs'"),
        (["--epochs", "0"], "Received: epochs=0"),
        (["--version", "0"], "--version must be >= 1. Received: version=0"),
        (["--base-path", "{file}"], "--base-path must be a directory, but it is a file"),
        (["--base-path", "{file}/models"], "--base-path cannot be created: "),
        (["--dataset", "iris", "--csv", "{csv}", "--target", "label"], "Use one data source"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, people_csv: Path, args: list[str], expected: str) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    args = [a.format(tmp=tmp_path, csv=people_csv, file=file) for a in args]
    result = _run([*args, "--run-dir", str(tmp_path / "run"), "--base-path", str(tmp_path / "models")]
                  if "--base-path" not in args else [*args, "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists(), "training must not start on bad input"


def test_existing_version_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "models" / "iris" / "3").mkdir(parents=True)
    result = _run(["--dataset", "iris", "--version", "3", "--base-path", str(tmp_path / "models"),
                   "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert "Version 3 of model 'iris' already exists" in result.output
    assert not (tmp_path / "run").exists()


def test_export_errors_are_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tfstack import export

    def refuse(spec, base_path, *, version=None, allow_schema_change=False):
        assert isinstance(spec, export.ExportSpec) and spec.model_name == "iris"
        raise export.RepositoryError(f"Cannot write into {base_path}: disk full")

    monkeypatch.setattr(export, "publish", refuse)
    result = _run(["--dataset", "iris", "--epochs", "1", "--quiet", "--base-path", str(tmp_path / "m"),
                   "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == f"Error: Cannot write into {tmp_path / 'm'}: disk full"
    assert "Traceback" not in result.output


def test_an_incompatible_schema_is_refused_before_training(tmp_path: Path, people_csv: Path) -> None:
    """Issue 18, item 2: `--csv people.csv` onto an existing `iris` with other inputs is refused
    before a training run is spent on it, and the repository is untouched."""
    import hashlib

    import keras
    import numpy as np

    from tfstack import export

    x = keras.Input((2,), name="x", dtype="float32")
    existing = export.ExportSpec(
        model_name="iris", task="classification", keras_model=keras.Model({"x": x}, keras.layers.Dense(3, activation="softmax")(x)),
        features=(export.FeatureSpec(name="x", dtype="float32", shape=(2,)),), class_names=("a", "b", "c"),
        sample_inputs={"x": np.zeros((2, 2), np.float32)},
    )
    models = tmp_path / "models"
    export.publish(existing, models)

    def digest() -> str:
        return hashlib.sha256(b"".join(p.as_posix().encode() + (p.read_bytes() if p.is_file() else b"")
                                       for p in sorted(models.rglob("*")))).hexdigest()

    before = digest()
    result = _run(["--csv", str(people_csv), "--target", "label", "--model-name", "iris", "--epochs", "1",
                   "--base-path", str(models), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "Refusing to publish a new version of 'iris'" in result.output and "nothing was written" in result.output
    assert "serving_default: input 'x' was removed" in result.output
    assert "--allow-schema-change" in result.output
    assert not (tmp_path / "run").exists(), "no training ran"
    assert digest() == before
