"""Publishing onto an existing model must not silently change what its clients send or get (issue 18, item 2).

`tfstack train --csv iris.csv --target label` once published version 2 of `iris` with another
input schema. Export now compares the new signatures with the latest version's (the rule
rollout's signature gate applies before a canary) and refuses a breaking change, leaving the
repository byte-for-byte as it was.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from tfstack import export


def tree_digest(root: Path) -> str:
    """Every path under root (hidden ones too) with its bytes: equal digests, identical trees."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_an_incompatible_schema_is_refused_and_the_repository_is_untouched(make_spec, base_path):
    export.publish(make_spec("classification", model_name="iris"), base_path)  # input features [4], 3 classes
    before = tree_digest(base_path)

    different = make_spec("regression", model_name="iris")  # input features [3], one value out
    with pytest.raises(export.SchemaChangeError) as info:
        export.publish(different, base_path)

    message = str(info.value)
    assert "incompatible with version 1" in message and "nothing was written" in message
    assert "serving_default: input 'features' shape changed incompatibly: [-1, 4] -> [-1, 3]" in message
    assert "serving_default: output 'probabilities' was removed" in message
    assert "--model-name" in message and "--allow-schema-change" in message
    assert tree_digest(base_path) == before
    assert export.ModelRepository(base_path).versions("iris") == [1]


def test_a_compatible_version_and_a_forced_change_are_published(make_spec, base_path):
    export.publish(make_spec("classification", model_name="iris"), base_path)
    assert export.publish(make_spec("classification", model_name="iris"), base_path).version == 2
    forced = export.publish(make_spec("regression", model_name="iris"), base_path, allow_schema_change=True)
    assert forced.version == 3 and "regress" in forced.manifest["signatures"]


def test_the_export_command_names_both_ways_out_and_exits_nonzero(make_spec, base_path, tmp_path):
    from tfstack.export.cli import export_command

    export.publish(make_spec("classification", model_name="churn"), base_path)
    regression = make_spec("regression").keras_model
    path = tmp_path / "other.keras"
    regression.save(path)
    before = tree_digest(base_path)

    runner = CliRunner()
    refused = runner.invoke(export_command, [str(path), "--model-name", "churn", "--base-path", str(base_path), "--regression"])
    assert refused.exit_code == 1, refused.output
    assert "Refusing to publish a new version of 'churn'" in refused.output and "--allow-schema-change" in refused.output
    assert tree_digest(base_path) == before

    forced = runner.invoke(export_command, [str(path), "--model-name", "churn", "--base-path", str(base_path),
                                            "--regression", "--allow-schema-change"])
    assert forced.exit_code == 0, forced.output
    assert "Published churn version 2" in forced.output


@pytest.mark.parametrize("kind", ["classification", "regression", "mixed"])
def test_the_serving_signature_known_before_training_is_the_exported_one(published, kind):
    """`serving_signature` (what `tfstack train` checks before fitting) must equal what the
    export writes; otherwise the early check would refuse, or let through, the wrong runs."""
    from tests.unit.export.conftest import _features

    version = published[kind]
    planned = export.serving_signature(_features(kind), task=version.manifest["task"],
                                       class_names=version.manifest.get("class_names") or ())
    assert planned["serving_default"] == export.read_signature_summary(version.path)["serving_default"]
