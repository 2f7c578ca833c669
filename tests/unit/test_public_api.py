"""Each package's public surface is exactly its `__all__`, and the light packages stay light."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PACKAGES = ["training", "export", "serving", "client"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name):
    package = importlib.import_module(f"tfstack.{name}")
    # "@py_builtins"/"@pytest_ar" come from pytest's assertion rewriting of the distribution's modules.
    public = {n for n in dir(package) if not n.startswith(("_", "@"))}
    submodules = {n for n in public if type(getattr(package, n)).__name__ == "module"}
    assert set(package.__all__) == public - submodules
    for attribute in package.__all__:
        value = getattr(package, attribute)
        if type(value).__name__ == "GenericAlias" or isinstance(value, str):  # a type alias, e.g. list[...]; a constant
            continue
        assert value.__module__.startswith(f"tfstack.{name}.")


@pytest.mark.parametrize("name", PACKAGES)
def test_importing_a_package_does_not_import_tensorflow(name):
    code = f"import sys, json, tfstack.{name}; print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
