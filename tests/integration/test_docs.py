"""The documentation is executed: every shell and Python block of README.md, client/README.md
and docs/rollout.md runs against real servers on small models (issue 18).

A block runs as written, in a directory whose `models/` holds tiny stand-ins for the models the
docs name (digits, half_plus_two, iris), with two substitutions: the documented ports
(8500/8501 after 127.0.0.1:, localhost:, --port= or --rest_api_port=) become free ports, and `tfstack` and
`python` are this checkout's. A block that cannot run here is preceded by
`<!-- docs-test: skip: <reason> -->`, and the reason is shown as the test's skip reason.
A fenced block must name its language (sh, python, text, ...), so a new command cannot slip by.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.models import build_half_plus
from tests.support.server import free_port, start_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "client/README.md", "docs/rollout.md")
RUNNABLE = {"sh": "shell", "bash": "shell", "python": "python"}
FENCE = re.compile(r"^```(?P<lang>\S*)\n(?P<body>.*?)^```$", re.S | re.M)
DIRECTIVE = re.compile(r"<!-- docs-test: (?P<what>skip): (?P<reason>.+?) -->\s*$")
PORTS = re.compile(r"(?P<prefix>\b(?:127\.0\.0\.1|localhost):|--port=|--rest_api_port=)(?P<port>850[01])\b")
TIMEOUT = 240


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    body: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        directive = DIRECTIVE.search(before)
        found.append(Block(doc, line, match["lang"], match["body"], directive["reason"] if directive else None))
    return found


ALL = [block for doc in DOCS for block in blocks(doc)]
RUN = [block for block in ALL if block.lang in RUNNABLE]


def test_every_fenced_block_names_its_language():
    unnamed = [block.id for block in ALL if not block.lang]
    assert unnamed == [], "name the language of these blocks (sh, python, text, ...) so the docs test knows what to run"


def test_the_docs_have_blocks_to_run():
    for doc in DOCS:
        assert any(b.doc == doc and b.skip is None for b in RUN), f"{doc}: no block is executed"


# ---- small models under the names the docs use ------------------------------------------------


def _classifier(model_name: str, feature: str, shape: tuple[int, ...], classes: tuple[str, ...], seed: int):
    import keras

    from tfstack import export

    keras.utils.set_random_seed(seed)
    x = keras.Input(shape, name=feature, dtype="float32")
    flat = keras.layers.Flatten()(x) if len(shape) > 1 else x
    out = keras.layers.Dense(len(classes), activation="softmax")(flat)
    rng = np.random.default_rng(seed)
    return export.ExportSpec(
        model_name=model_name, task="classification", keras_model=keras.Model({feature: x}, out),
        features=(export.FeatureSpec(name=feature, dtype="float32", shape=shape),), class_names=classes,
        sample_inputs={feature: rng.uniform(0, 4, (6, *shape)).astype(np.float32)},
        metrics={"accuracy": 0.9}, training_config={"epochs": 1}, dataset={"name": model_name},
    )


@pytest.fixture(scope="session")
def docs_models(tmp_path_factory) -> Path:
    """`models/` with digits/1 (pixels [8, 8], ten classes), half_plus_two/123 and iris/1, plus
    an exported iris SavedModel for rollout's `publish` (`exported/`)."""
    from tfstack import export

    root = tmp_path_factory.mktemp("docs")
    models = root / "models"
    export.publish(_classifier("digits", "pixels", (8, 8), tuple("0123456789"), seed=1), models)
    build_half_plus(models / "half_plus_two" / "123")
    export.publish(_classifier("iris", "features", (4,), ("setosa", "versicolor", "virginica"), seed=2), models)
    candidate = export.publish(_classifier("iris", "features", (4,), ("setosa", "versicolor", "virginica"), seed=3),
                               root / "candidates")
    shutil.copytree(candidate.path, root / "exported_savedmodel")
    return models


@pytest.fixture(scope="session")
def docs_server(docs_models, tmp_path_factory):
    """One server for README.md and client/README.md: digits, and half_plus_two with the labels
    stable and canary (labels at startup need --allow_version_labels_for_unavailable_models)."""
    workdir = tmp_path_factory.mktemp("docs-server")
    config = workdir / "models.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'digits' base_path: '{docs_models / 'digits'}' model_platform: 'tensorflow' }}\n"
        f"  config {{ name: 'half_plus_two' base_path: '{docs_models / 'half_plus_two'}' model_platform: 'tensorflow'\n"
        "    version_labels { key: 'stable' value: 123 } version_labels { key: 'canary' value: 123 } }\n"
        "}\n"
    )
    with start_server(workdir, f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
                      model_base_path=None) as running:
        yield running


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFSTACK_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(block: Block, cwd: Path, grpc_port: int, rest_port: int, *, prelude: str = "") -> subprocess.CompletedProcess[str]:
    body = PORTS.sub(lambda m: f"{m['prefix']}{grpc_port if m['port'] == '8500' else rest_port}", block.body)
    if RUNNABLE[block.lang] == "python":
        command = [sys.executable, "-c", body]
    else:
        command = ["bash", "-c", f"set -euo pipefail\n{prelude}{body}"]
    return subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=TIMEOUT)


def _sandbox(tmp_path: Path, models: Path, *, copy: bool = False) -> Path:
    cwd = tmp_path / "work"
    cwd.mkdir()
    if copy:
        shutil.copytree(models, cwd / "models")
    else:
        (cwd / "models").symlink_to(models)
    return cwd


SERVED_DOCS = ("README.md", "client/README.md")


@pytest.mark.parametrize("block", [b for b in RUN if b.doc in SERVED_DOCS], ids=lambda b: b.id)
def test_block_runs(block: Block, request, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    server = request.getfixturevalue("docs_server")
    models = request.getfixturevalue("docs_models")
    done = _run(block, _sandbox(tmp_path, models), server.grpc_port, server.rest_port)
    assert done.returncode == 0, f"{block.id} failed ({done.returncode}):\n{block.body}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


# ---- docs/rollout.md: its walk-through starts its own server --------------------------------

# The walk-through's background server is stopped when the block ends, whatever happens.
STOP_BACKGROUND = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n"
ROLLOUT_BLOCKS = [b for b in RUN if b.doc == "docs/rollout.md"]
WALKTHROUGH = next(b for b in ROLLOUT_BLOCKS if b.lang == "sh" and "init iris" in b.body)


@pytest.mark.parametrize("block", [b for b in ROLLOUT_BLOCKS if b is not WALKTHROUGH], ids=lambda b: b.id)
def test_rollout_block_runs(block: Block):
    if block.skip:
        pytest.skip(block.skip)
    pytest.skip(f"needs the iris labels: runs in test_rollout_walkthrough_restart_and_traffic after {WALKTHROUGH.id}")


def test_rollout_walkthrough_restart_and_traffic(docs_models, tmp_path):
    """The walk-through as written (watch for 2 s instead of 600), then item 8: the documented
    server command starts again on the config the walk-through left, labels included (TF Serving
    only allows that with --allow_version_labels_for_unavailable_models, spec §4.5), and the
    traffic-split snippet runs against it."""
    cwd = _sandbox(tmp_path, docs_models, copy=True)
    shutil.copytree(docs_models.parent / "exported_savedmodel", cwd / "exported_savedmodel")
    done = _run(WALKTHROUGH, cwd, free_port(), free_port(), prelude=STOP_BACKGROUND + "export WATCH_SECONDS=2\n")
    assert done.returncode == 0, f"{WALKTHROUGH.id} failed ({done.returncode}):\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-6000:]}"
    config = (cwd / "models.config").read_text()
    assert "version_labels" in config  # a restart has labels to assign before anything loads

    serve = re.search(r"^tfstack serve .*$", WALKTHROUGH.body.replace("\\\n", " "), re.M)
    assert serve, "the walk-through starts a server"
    traffic = next(b for b in ROLLOUT_BLOCKS if b.lang == "python" and "CanarySplit" in b.body)
    script = (
        f"{serve.group(0)}\n"
        "tfstack status iris --rest http://127.0.0.1:8501 --label stable --wait 120\n"
        f"python - <<'SNIPPET'\n{traffic.body}SNIPPET\n"
    )
    restart = Block(WALKTHROUGH.doc, WALKTHROUGH.line, "sh", script, None)
    again = _run(restart, cwd, free_port(), free_port(), prelude=STOP_BACKGROUND)
    assert again.returncode == 0, f"restart or {traffic.id} failed:\n{again.stdout[-3000:]}\n{again.stderr[-6000:]}"
