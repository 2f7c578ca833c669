"""`tfstack models list|show` as a user sees it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from tfstack import export
from tfstack.export.cli import models


def _run(*args):
    result = CliRunner().invoke(models, list(args))
    return result.exit_code, result.output


def test_list_shows_models_versions_and_key_metric(make_spec, base_path):
    export.publish(make_spec("classification"), base_path)
    export.publish(make_spec("classification"), base_path)
    export.publish(make_spec("regression"), base_path)

    code, out = _run("list", "--base-path", str(base_path))

    assert code == 0, out
    assert "tiny-classification" in out and "tiny-regression" in out
    assert "2 (latest)" in out
    assert "accuracy=0.875" in out
    assert "r2=0.5" in out


def test_list_reports_a_corrupt_version_without_failing(make_spec, base_path):
    export.publish(make_spec("regression"), base_path)
    (base_path / "tiny-regression" / "7").mkdir()

    code, out = _run("list", "--base-path", str(base_path))

    assert code == 0, out
    assert "7 (latest)" in out
    assert "corrupt" in out


def test_list_of_an_empty_or_missing_repository(tmp_path):
    code, out = _run("list", "--base-path", str(tmp_path / "nothing"))
    assert code == 0
    assert "No models in" in out


def test_show_prints_the_manifest_summary_and_json(make_spec, base_path):
    published = export.publish(make_spec("classification"), base_path)

    code, out = _run("show", "tiny-classification", "--base-path", str(base_path))
    assert code == 0, out
    for text in ("tiny-classification version 1", "synthetic-classification", "accuracy", "0.875", "classify", "scores", "serving_default"):
        assert text in out, text

    code, out = _run("show", "tiny-classification", "1", "--json", "--base-path", str(base_path))
    assert code == 0, out
    assert json.loads(out) == published.manifest


def test_show_prints_the_data_profile(make_spec, base_path):
    import dataclasses

    spec = make_spec("classification")
    rows = {name: np.concatenate([array] * 4) for name, array in spec.sample_inputs.items()}
    profile = export.build_profile(spec.features, rows, task="classification", class_names=spec.class_names,
                                   source="training split", labels=np.array([0, 1, 1, 1]))
    export.publish(dataclasses.replace(spec, data_profile=profile), base_path)

    result = CliRunner().invoke(models, ["show", "tiny-classification", "--base-path", str(base_path)],
                                env={"COLUMNS": "200"})
    code, out = result.exit_code, result.output
    assert code == 0, out
    assert f"data profile (training split, {profile['rows']} rows)" in out
    for feature in profile["features"]:
        assert feature["name"] in out
    assert "test labels: " in out and "75.0%" in out
    code, out = _run("show", "tiny-classification", "--json", "--base-path", str(base_path))
    assert json.loads(out)["data_profile"] == profile


def test_show_errors_are_one_line(make_spec, base_path, tmp_path):
    export.publish(make_spec("regression"), base_path)
    (base_path / "tiny-regression" / "5").mkdir()
    file_path = tmp_path / "file"
    file_path.write_text("x")

    cases = [
        (("show", "tiny-regression", "9"), "Version 9 of model 'tiny-regression' not found"),
        (("show", "tiny-regression", "5"), "is corrupt: it has no saved_model.pb"),
        (("show", "absent"), "Model 'absent' has no versions"),
        (("show", "../x"), "model_name must be one path component"),
    ]
    for args, message in cases:
        code, out = _run(*args, "--base-path", str(base_path))
        assert code == 1, (args, out)
        assert out.startswith("Error: ") and message in out and "Traceback" not in out, (args, out)

    code, out = _run("list", "--base-path", str(file_path))
    assert code == 1 and "is a file, expected a directory" in out
    code, out = _run("show", "tiny-regression", "0", "--base-path", str(base_path))
    assert code == 2 and "0 is not in the range x>=1" in out


def test_listing_never_imports_tensorflow(make_spec, base_path):
    """`tfstack models list|show` stay fast: reading a repository needs no TensorFlow."""
    export.publish(make_spec("regression"), base_path)
    code = (
        "import sys; from click.testing import CliRunner; from tfstack.export.cli import models\n"
        f"assert CliRunner().invoke(models, ['list', '--base-path', {str(base_path)!r}]).exit_code == 0\n"
        f"assert CliRunner().invoke(models, ['show', 'tiny-regression', '--base-path', {str(base_path)!r}]).exit_code == 0\n"
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
