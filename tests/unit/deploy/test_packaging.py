"""What `pip install` and `docker build` get (issue 18, items 10 and 11)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
EXTRAS = PROJECT["optional-dependencies"]


def _names(requirements: list[str]) -> set[str]:
    """Distribution names (normalised) of requirement strings, with tfstack[...] self-references expanded."""
    names: set[str] = set()
    for requirement in requirements:
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[([^\]]+)\])?", requirement)
        name = match.group(1).lower().replace("_", "-")
        if name == "tfstack":
            for extra in match.group(2).split(","):
                names |= _names(EXTRAS[extra.strip()])
        else:
            names.add(name)
    return names


def _imported_top_level(package: str, *, skip: tuple[str, ...] = ()) -> set[str]:
    """Top-level modules that `package`'s source imports anywhere (lazy imports too)."""
    modules: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT / package).parts
        if set(parts[:-1]) & set(skip) or "_proto" in parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    first_party = {"tfstack", "tests"}
    return {m for m in modules if m not in first_party and m not in sys.stdlib_module_names}


# Modules a declared distribution provides as its own API (TensorFlow ships Keras 3 as its
# high-level API, and its TF Lite tools run on the flatbuffers it pins), so they need no line of their own.
PROVIDED_BY = {"keras": "tensorflow", "flatbuffers": "tensorflow", "google": "protobuf"}
# The test harness and its pytest plugin (pytest, the Docker SDK) are test tooling: the dev extra.
TEST_TOOLING = ("testing",)


@pytest.mark.parametrize(
    ("package", "extra", "skip"),
    [("training", "train", ()), ("export", "train", ()), ("serving", "serve", ("bench", *TEST_TOOLING)),
     ("serving", "bench", TEST_TOOLING), ("client", None, ())],
)
def test_every_third_party_import_is_declared_by_the_extra_that_needs_it(package, extra, skip):
    declared = _names(PROJECT["dependencies"]) | (_names(EXTRAS[extra]) if extra else set())
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(_imported_top_level(package, skip=skip)):
        if PROVIDED_BY.get(module) in declared:
            continue
        providers = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not providers & declared:
            missing.append(f"{module} (from {sorted(providers)})")
    assert missing == [], f"{package} imports modules that `pip install 'tfstack[{extra or ''}]'` does not declare"


def test_full_is_the_union_of_train_serve_and_bench_and_the_client_stays_light():
    assert _names(EXTRAS["full"]) == _names(EXTRAS["train"]) | _names(EXTRAS["serve"]) | _names(EXTRAS["bench"])
    assert "pillow" in _names(EXTRAS["train"])
    assert not {"tensorflow", "tensorflow-serving-api", "keras"} & (_names(PROJECT["dependencies"]) | _names(EXTRAS["client"]))


def test_the_license_is_an_spdx_expression():
    # A `{text = ...}` table makes setuptools >= 77 print a deprecation warning on every install.
    assert PROJECT["license"] == "Apache-2.0"


def test_the_dockerfile_installs_dependencies_before_it_copies_the_source():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()]
    first_source_copy = next(i for i, line in enumerate(lines) if re.match(r"COPY (training|export|serving|client)\b", line))
    dependency_install = next(i for i, line in enumerate(lines) if "pip install" in line and "--no-deps" not in line)
    assert dependency_install < first_source_copy
    copied_before = [line for line in lines[:dependency_install] if line.startswith("COPY")]
    assert copied_before == ["COPY pyproject.toml README.md ./"]
