"""The distribution installs the four packages under `tfstack.` and nothing else at the top level."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"training": "tfstack.training", "export": "tfstack.export", "serving": "tfstack.serving", "client": "tfstack.client"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_installed_under_the_tfstack_namespace():
    # A subpackage missing from this list would be absent from the wheel, yet importable from a
    # checkout: the kind of gap only a user's fresh install finds.
    on_disk = {"tfstack"}
    for folder, installed in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([installed, *relative.parts]))
    assert set(_setuptools()["packages"]) == on_disk


def test_only_the_tfstack_name_is_claimed_in_site_packages():
    settings = _setuptools()
    assert settings["package-dir"] == {installed: folder for folder, installed in FOLDERS.items()}
    assert {name.split(".")[0] for name in settings["packages"]} == {"tfstack"}
    assert "py-modules" not in settings
    assert not (ROOT / "tfstack" / "__init__.py").exists()  # a namespace: the four packages join it
