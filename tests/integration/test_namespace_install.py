"""Installed from its wheel, tfstack never shadows a user's own `serving` or `client` package.

The project is built into a wheel and installed into a fresh virtual environment, next to a
user's project that has its own top-level `serving/` and `client/` packages. pytest loads
tfstack's plugin (entry point `pytest11: tfstack`) in every run of that environment; the user's
tests must still import the user's packages, and a run that uses no tfstack fixture must not
import the server, the harness's clients or TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = textwrap.dedent(
    """
    import json
    import sys

    import client, serving  # the project's own top-level packages, not tfstack's


    def test_the_projects_own_packages_are_imported(tmp_path):
        assert serving.OWNER == "user" and client.OWNER == "user"
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("tensorflow", "grpc", "httpx", "aiohttp")
                       or m.startswith(("tfstack.serving.server", "tfstack.serving.rollout", "tfstack.client")))
        plugin = sys.modules.get("tfstack.serving.testing.pytest_plugin")
        print("REPORT " + json.dumps({"heavy": heavy, "plugin": getattr(plugin, "__file__", None)}))
    """
)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the tfstack wheel installed (dependencies come from this one)."""
    work = tmp_path_factory.mktemp("namespace")
    dist = work / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = dist.glob("tfstack-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    # pytest, numpy, grpcio ... from this interpreter's site-packages, after the fresh venv's own
    # (a .pth line only appends a path: this venv's editable tfstack finder is not activated).
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user_project")
    for name in ("serving", "client"):
        (root / name).mkdir()
        (root / name / "__init__.py").write_text('OWNER = "user"\n')
    (root / "tests").mkdir()
    (root / "tests" / "test_mine.py").write_text(USER_TEST)
    return root


def _run(environment: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(environment / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project, capture_output=True, text=True, timeout=300,
    )


def test_the_wheel_installs_only_the_tfstack_namespace(environment):
    site = Path(subprocess.run([environment / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    top = {p.name for p in site.iterdir() if not p.name.endswith((".dist-info", ".pth")) and p.name != "__pycache__"}
    assert top == {"tfstack"}
    assert {p.name for p in (site / "tfstack").iterdir() if p.is_dir() and p.name != "__pycache__"} == {
        "training", "export", "serving", "client",
    }


def test_a_users_serving_and_client_packages_win_and_the_plugin_stays_light(environment, project):
    done = _run(environment, project, "-q", "-s", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("REPORT "))[len("REPORT "):])
    # The plugin was loaded from the installed wheel, and it imported nothing heavy.
    assert report["plugin"] is not None and str(environment) in report["plugin"]
    assert report["heavy"] == []


def test_the_plugin_options_are_prefixed(environment, project):
    done = _run(environment, project, "--help")
    assert done.returncode == 0, done.stderr
    assert "--tfstack-serving-backend" in done.stdout
    assert "--serving-backend" not in done.stdout.replace("--tfstack-serving-backend", "")
