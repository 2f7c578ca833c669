"""The repository's guarantees: atomic, never overwritten, distinct versions under concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfstack import export
from tfstack.export import ModelRepository

REPO_ROOT = Path(__file__).resolve().parents[3]


def _leftovers(model_dir: Path) -> list[str]:
    if not model_dir.exists():
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.name.startswith((".staging-", ".removing-")))


def _wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_versions_count_up_and_explicit_versions_are_respected(make_spec, base_path):
    spec = make_spec("regression")
    repo = ModelRepository(base_path)

    assert repo.versions(spec.model_name) == [] and repo.latest(spec.model_name) is None
    first = repo.publish(spec)
    second = export.publish(spec, base_path)
    explicit = export.publish(spec, base_path, version=10)
    after = export.publish(spec, base_path)

    assert [first.version, second.version, explicit.version, after.version] == [1, 2, 10, 11]
    assert repo.versions(spec.model_name) == [1, 2, 10, 11]
    assert repo.latest(spec.model_name) == 11
    assert repo.models() == [spec.model_name]
    assert after.path == base_path / spec.model_name / "11"
    assert repo.manifest(spec.model_name, 10)["version"] == 10
    assert _leftovers(base_path / spec.model_name) == []


def test_existing_version_is_an_error_and_nothing_is_overwritten(make_spec, base_path):
    spec = make_spec("regression")
    published = export.publish(spec, base_path, version=3)
    before = (published.path / "assets.extra" / "manifest.json").read_bytes()

    with pytest.raises(export.VersionExistsError, match=r"Version 3 of model 'tiny-regression' already exists"):
        export.publish(spec, base_path, version=3)

    assert (published.path / "assets.extra" / "manifest.json").read_bytes() == before
    assert _leftovers(base_path / spec.model_name) == []


def test_a_non_numeric_version_file_also_blocks_nothing_but_a_numeric_file_counts(make_spec, base_path):
    """TF Serving treats any int-named child (even a file) as a version, so we never reuse its number."""
    spec = make_spec("regression")
    model_dir = base_path / spec.model_name
    model_dir.mkdir(parents=True)
    (model_dir / "4").write_text("not a model")
    (model_dir / "2.denied").mkdir()

    assert ModelRepository(base_path).versions(spec.model_name) == []
    assert export.publish(spec, base_path).version == 5


def test_staging_directories_are_never_listed_as_versions(make_spec, base_path):
    spec = make_spec("regression")
    published = export.publish(spec, base_path)
    staging = base_path / spec.model_name / ".staging-inprogress"
    staging.mkdir()
    (staging / "saved_model.pb").write_bytes(b"partial")

    repo = ModelRepository(base_path)
    assert repo.versions(spec.model_name) == [published.version]
    assert repo.models() == [spec.model_name]


def test_failed_verification_leaves_nothing_behind(base_path):
    import keras
    import numpy as np

    x = keras.Input((3,), name="features")
    # Dropout forced on: every call differs, so the reloaded model cannot match the in-memory one.
    out = keras.layers.Dense(1)(keras.layers.Dropout(0.9)(keras.layers.Dense(16)(x), training=True))
    spec = export.ExportSpec(
        model_name="random",
        task="regression",
        keras_model=keras.Model({"features": x}, out),
        features=(export.FeatureSpec(name="features", dtype="float32", shape=(3,)),),
        sample_inputs={"features": np.ones((8, 3), np.float32)},
    )

    with pytest.raises(export.VerificationError, match="differ from the Keras model") as info:
        export.publish(spec, base_path)

    assert "\n" not in str(info.value)
    assert ModelRepository(base_path).versions("random") == []
    # A refused first version does not even leave an empty model directory for a server to see.
    assert not (base_path / "random").exists()


def test_model_that_rejects_the_declared_features_is_a_one_line_export_error(make_spec, base_path):
    spec = make_spec(
        "regression",
        features=(export.FeatureSpec(name="pixels", dtype="float32", shape=(3,)),),
        sample_inputs={"pixels": np.zeros((2, 3), np.float32)},
    )

    with pytest.raises(export.ExportError, match=r"Exporting model 'tiny-regression' failed .*'pixels'") as info:
        export.publish(spec, base_path)
    assert "\n" not in str(info.value)
    assert ModelRepository(base_path).versions(spec.model_name) == []
    assert _leftovers(base_path / spec.model_name) == []


@pytest.mark.parametrize(
    ("kind", "overrides", "message"),
    [
        ("classification", {"class_names": ("a", "b")}, r"class_names has 2 names but the model outputs 3 probabilities"),
        ("classification", {"task": "regression", "class_names": (), "confusion_matrix": None},
         r"A regression keras_model must return \[N\] or \[N, 1\]. Received: output shape \[None, 3\]"),
    ],
)
def test_model_output_that_does_not_fit_the_task_is_rejected(make_spec, base_path, kind, overrides, message):
    spec = make_spec(kind, **overrides)

    with pytest.raises(export.ExportError, match=f"^{message}"):
        export.publish(spec, base_path)
    assert _leftovers(base_path / spec.model_name) == []


def test_stale_staging_from_a_killed_publisher_is_removed_by_the_next_publish(make_spec, base_path):
    """kill -9 in the middle of a real publish, after the SavedModel is written."""
    spec = make_spec("regression")
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO_ROOT)!r})
import tfstack.export._repository as repository
from tests.unit.export.conftest import build_spec
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
repository._verify = die
repository.ModelRepository({str(base_path)!r}).publish(build_spec("regression"))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, timeout=300)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    model_dir = base_path / spec.model_name
    stale = [p for p in model_dir.iterdir() if p.name.startswith(".staging-") and p.is_dir()]
    assert len(stale) == 1 and (stale[0] / "saved_model.pb").exists()
    assert ModelRepository(base_path).versions(spec.model_name) == []

    published = export.publish(spec, base_path)

    assert published.version == 1
    assert not any(p.name.startswith(".staging-") for p in model_dir.iterdir())


def test_staging_of_a_live_publisher_is_left_alone(make_spec, base_path):
    spec = make_spec("regression")
    model_dir = base_path / spec.model_name
    model_dir.mkdir(parents=True)
    # A publisher that is alive: holds its staging lock and waits (no TensorFlow, so it is quick).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; from filelock import FileLock\n"
            f"lock = FileLock({str(model_dir / '.staging-live.lock')!r}, timeout=0); lock.acquire()\n"
            f"os.mkdir({str(model_dir / '.staging-live')!r}); print('ready', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        export.publish(spec, base_path)
        assert (model_dir / ".staging-live").is_dir()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)

    export.publish(spec, base_path)
    assert not (model_dir / ".staging-live").exists()
    assert ModelRepository(base_path).versions(spec.model_name) == [1, 2]


def test_two_processes_publishing_at_once_get_distinct_versions(base_path, tmp_path):
    """Both publishers hammer the same model; each also reports whether it ever saw the other inside
    the numbering section (the part between choosing a number and renaming). With the lock it never does."""
    rounds = 3
    script = f"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, {str(REPO_ROOT)!r})
from tfstack import export
import tfstack.export._repository as repository
from tests.unit.export.conftest import build_spec
me, other = sys.argv[1], str(1 - int(sys.argv[1]))
flags = Path({str(tmp_path)!r})
overlaps = []
fsync_tree = repository._fsync_tree
def watched_fsync_tree(root):
    # Runs between choosing the version number and the rename: hold the section open briefly and
    # look for the other publisher in it.
    (flags / ("inside-" + me)).touch()
    deadline = time.monotonic() + 0.4
    seen = False
    while time.monotonic() < deadline and not seen:
        seen = (flags / ("inside-" + other)).exists()
        time.sleep(0.01)
    (flags / ("inside-" + me)).unlink()
    overlaps.append(seen)
    fsync_tree(root)
repository._fsync_tree = watched_fsync_tree
spec = build_spec("regression")
(flags / ("ready-" + me)).touch()
deadline = time.monotonic() + 300
while not (flags / "go").exists():
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.01)
versions = [export.publish(spec, {str(base_path)!r}).version for _ in range({rounds})]
print(json.dumps({{"versions": versions, "overlaps": overlaps}}))
"""
    publishers = [
        subprocess.Popen([sys.executable, "-c", script, str(i)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in range(2)
    ]
    try:
        _wait_for(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(2)), "both publishers to be ready")
        (tmp_path / "go").touch()
        results = [p.communicate(timeout=300) for p in publishers]
    finally:
        for p in publishers:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(publishers, results):
        assert p.returncode == 0, err.decode()[-2000:]
    reports = [json.loads(out) for out, _ in results]
    versions = [v for report in reports for v in report["versions"]]

    assert not any(o for report in reports for o in report["overlaps"])
    assert sorted(versions) == list(range(1, 2 * rounds + 1))
    repo = ModelRepository(base_path)
    assert repo.versions("tiny-regression") == list(range(1, 2 * rounds + 1))
    for version in versions:
        assert repo.manifest("tiny-regression", version)["version"] == version
    assert _leftovers(base_path / "tiny-regression") == []


def test_corrupt_version_is_reported_and_does_not_block_publishing(make_spec, base_path):
    spec = make_spec("regression")
    (base_path / spec.model_name / "3" / "variables").mkdir(parents=True)
    repo = ModelRepository(base_path)

    with pytest.raises(export.CorruptVersionError, match=r"Version 3 of model 'tiny-regression' at .* no saved_model.pb"):
        repo.manifest(spec.model_name, 3)
    assert export.publish(spec, base_path).version == 4
    assert repo.versions(spec.model_name) == [3, 4]


def test_remove_makes_a_version_disappear(make_spec, base_path):
    spec = make_spec("regression")
    export.publish(spec, base_path)
    export.publish(spec, base_path)
    repo = ModelRepository(base_path)

    repo.remove(spec.model_name, 2)

    assert repo.versions(spec.model_name) == [1]
    assert _leftovers(base_path / spec.model_name) == []
    with pytest.raises(export.VersionNotFoundError, match=r"Version 2 of model 'tiny-regression' not found.*\[1\]"):
        repo.remove(spec.model_name, 2)
    # Removing never frees the number for reuse by accident: max+1 continues from what exists.
    assert export.publish(spec, base_path).version == 2


def test_base_path_that_is_a_file_is_an_error(make_spec, tmp_path):
    spec = make_spec("regression")
    base = tmp_path / "models"
    base.write_text("oops")

    with pytest.raises(export.RepositoryError, match=r"base_path .*models is a file, expected a directory"):
        export.publish(spec, base)
    with pytest.raises(export.RepositoryError, match="is a file"):
        export.publish(spec, base / "nested")
    with pytest.raises(export.RepositoryError, match="is a file"):
        ModelRepository(base).models()
    assert base.read_text() == "oops"


def test_unwritable_base_path_is_an_error(make_spec, tmp_path):
    spec = make_spec("regression")
    if os.geteuid() == 0:
        # root ignores permission bits; /proc refuses new directories even for root.
        base = Path("/proc/tfstack-no-such-dir/models")
    else:
        parent = tmp_path / "readonly"
        parent.mkdir()
        parent.chmod(0o500)
        base = parent / "models"

    with pytest.raises(export.RepositoryError, match=r"Cannot create .*models"):
        export.publish(spec, base)


@pytest.mark.parametrize(
    ("version", "error", "message"),
    [
        ("3", TypeError, r"version must be an int. Received: version='3'"),
        (2.0, TypeError, r"version must be an int. Received: version=2.0"),
        (True, TypeError, r"version must be an int. Received: version=True"),
        (0, ValueError, r"version must be >= 1. Received: version=0"),
    ],
)
def test_bad_version_argument_fails_before_any_io(make_spec, base_path, version, error, message):
    with pytest.raises(error, match=message):
        export.publish(make_spec("regression"), base_path, version=version)
    assert not base_path.exists()


def test_publish_rejects_a_non_spec(base_path):
    with pytest.raises(TypeError, match=r"spec must be an export.ExportSpec. Received: spec=dict"):
        export.publish({"model_name": "x"}, base_path)
    assert not base_path.exists()


def test_publish_saved_model_copies_a_version_in_with_its_manifest(published, base_path):
    source = published["classification"]
    repo = ModelRepository(base_path)

    first = repo.publish_saved_model(source.path, "copied", manifest_updates={"published_from": "elsewhere"})
    second = repo.publish_saved_model(source.path, "copied")

    assert (first.version, second.version) == (1, 2)
    assert repo.versions("copied") == [1, 2]
    assert _leftovers(base_path / "copied") == []
    manifest = repo.manifest("copied", 1)
    assert manifest["model_name"] == "copied" and manifest["version"] == 1
    assert manifest["published_from"] == "elsewhere"
    assert manifest["metrics"] == source.manifest["metrics"]
    assert (first.path / "saved_model.pb").read_bytes() == (source.path / "saved_model.pb").read_bytes()


def test_publish_saved_model_without_a_manifest_writes_the_signatures(published, base_path, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(published["regression"].path, bare)
    (bare / "assets.extra" / "manifest.json").unlink()

    result = ModelRepository(base_path).publish_saved_model(bare, "bare", version=7)

    assert result.version == 7
    assert "serving_default" in result.manifest["signatures"]
    with pytest.raises(export.VersionExistsError):
        ModelRepository(base_path).publish_saved_model(bare, "bare", version=7)


def test_publish_saved_model_rejects_a_directory_without_a_saved_model(base_path, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(export.RepositoryError, match="expected a SavedModel directory"):
        ModelRepository(base_path).publish_saved_model(tmp_path / "empty", "m")
    assert not (base_path / "m").exists()
