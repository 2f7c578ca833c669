"""One TensorFlow version end to end: the tensorflow/serving image that serves the models is the
same minor release as the TensorFlow that exports them (pyproject's pin, the Dockerfile's).

A SavedModel written by a newer TensorFlow may use ops or op versions an older
tensorflow_model_server does not have, and the load fails in production only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
IMAGE_TAG = re.compile(r"tensorflow/serving:(?P<tag>[0-9]+\.[0-9]+\.[0-9]+)(?:-gpu)?\b")
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", "runs", "models", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".txt", ".sh", ".json", ""}


def _image_pins(root: Path) -> dict[str, set[str]]:
    """tag -> files that name tensorflow/serving:<tag>, over the repository's text files (this
    test file excepted: it names wrong tags on purpose)."""
    pins: dict[str, set[str]] = {}
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            path = Path(directory) / name
            if (path.suffix not in TEXT_SUFFIXES and name != "Dockerfile") or path.resolve() == Path(__file__).resolve():
                continue
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for match in IMAGE_TAG.finditer(text):
                pins.setdefault(match.group("tag"), set()).add(str(path.relative_to(root)))
    return pins


def _pyproject_minor(package: str) -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(rf'"{re.escape(package)}==(?P<minor>[0-9]+\.[0-9]+)\.\*"', text)
    assert match, f"pyproject.toml must pin {package}==X.Y.* (one minor release)"
    return match.group("minor")


def _disagreements(pins: dict[str, set[str]], minor: str) -> list[str]:
    problems = []
    if len(pins) > 1:
        problems.append(f"different tensorflow/serving tags: { {t: sorted(f) for t, f in pins.items()} }")
    for tag, files in pins.items():
        if ".".join(tag.split(".")[:2]) != minor:
            problems.append(f"tensorflow/serving:{tag} in {sorted(files)} is not TensorFlow {minor} (pyproject)")
    return problems


def test_every_file_pins_the_serving_image_to_pyprojects_tensorflow_minor():
    minor = _pyproject_minor("tensorflow")
    pins = _image_pins(ROOT)

    named = set().union(*pins.values()) if pins else set()
    assert {"docker-compose.yml", "deploy/k8s/deployment.yaml", "docs/deployment.md"} <= named
    assert _disagreements(pins, minor) == []


def test_the_tensorflow_family_and_the_dockerfile_share_one_minor():
    minor = _pyproject_minor("tensorflow")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")

    assert _pyproject_minor("tensorflow-serving-api") == minor
    assert _pyproject_minor("tensorboard") == minor
    assert re.search(rf"ARG TENSORFLOW_VERSION={re.escape(minor)}\n", dockerfile)
    assert 'tensorflow==${TENSORFLOW_VERSION}.*' in dockerfile


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"docker-compose.yml": "image: tensorflow/serving:2.21.0", "k8s.yaml": "image: tensorflow/serving:2.20.0"},
         "different tensorflow/serving tags"),
        ({"docker-compose.yml": "image: tensorflow/serving:2.20.0"}, "is not TensorFlow 2.21 (pyproject)"),
        ({"docs.md": "run `tensorflow/serving:2.22.0-gpu`"}, "is not TensorFlow 2.21 (pyproject)"),
    ],
)
def test_a_disagreeing_pin_is_caught(tmp_path, files, problem):
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    problems = _disagreements(_image_pins(tmp_path), "2.21")

    assert any(problem in p for p in problems), problems
