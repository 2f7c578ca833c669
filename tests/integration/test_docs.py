"""The documentation is executed: every shell and Python block of README.md, client/README.md
and docs/rollout.md runs, as written, against real servers on small models (issue 18).

A block runs in a fresh directory that holds what the docs assume the reader has: `models/` with
small stand-ins for the models they name (digits, half_plus_two, iris) and the reader's own files
(data.csv, photos/, my_training.py, rows.csv, exported_saved_model/, request.json, models.config,
monitoring.config, ssl.config with a generated key and certificate, labels.csv). `tfstack` and
`python` are this checkout's, and the documented ports (8500/8501 after 127.0.0.1:, localhost:,
--port= or --rest_api_port=) become free ports: the shared docs server's, or fresh ones for a
block that starts its own server. Trainings run one epoch unless the block says otherwise
(TFSTACK_TRAIN_EPOCHS, a documented `tfstack train` variable), load tests one second per
measurement (TFSTACK_BENCH_DURATION) and `watch` two seconds (WATCH_SECONDS, as in rollout.md).

A directive on the line before a block changes how it runs:
  `<!-- docs-test: servers -->`  each command is a server that runs until Ctrl-C: it is started,
                                 must report its REST API, is interrupted and must exit 0;
  `<!-- docs-test: repo -->`     runs in a view of the repository (make, .venv/bin/...); pytest
                                 commands there only collect, since they are this suite (CI's
                                 .ci/run runs `make test` itself);
  `<!-- docs-test: skip: needs Docker ... | needs a remote host ... -->`  not run, reason shown;
                                 nothing else may be skipped.
A fenced block must name its language (sh, python, text, ...), so a new command cannot slip by.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfstack.serving.testing._harness import _sigterm_when_parent_dies
from tests.support.models import build_half_plus
from tests.support.server import free_port, logged_models_config, start_server
from tests.support.tls import make_pki

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "client/README.md", "docs/rollout.md")
RUNNABLE = {"sh": "shell", "bash": "shell", "python": "python"}
FENCE = re.compile(r"^```(?P<lang>\S*)\n(?P<body>.*?)^```$", re.S | re.M)
DIRECTIVE = re.compile(r"<!-- docs-test: (?P<mode>skip|servers|repo)(?:: (?P<reason>.+?))? -->\s*$")
ALLOWED_SKIPS = ("needs Docker", "needs a remote host")
PORTS = re.compile(r"(?P<prefix>\b(?:127\.0\.0\.1|localhost):|--port=|--rest_api_port=)(?P<port>850[01])\b")
TIMEOUT = 300
# Kept out of the repository view: what a run writes (the view's own models/ and runs/).
NOT_IN_REPO_VIEW = {".git", "models", "runs", "bench-results", ".pytest_cache", ".mypy-src"}


@dataclasses.dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    body: str
    mode: str = "run"           # run, servers, repo or skip
    reason: str | None = None   # why a skipped block is skipped

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def skip(self) -> str | None:
        return self.reason if self.mode == "skip" else None


def blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        directive = DIRECTIVE.search(before)
        mode, reason = (directive["mode"], directive["reason"]) if directive else ("run", None)
        found.append(Block(doc, line, match["lang"], match["body"], mode, reason))
    return found


ALL = [block for doc in DOCS for block in blocks(doc)]
RUN = [block for block in ALL if block.lang in RUNNABLE]


def test_every_fenced_block_names_its_language():
    unnamed = [block.id for block in ALL if not block.lang]
    assert unnamed == [], "name the language of these blocks (sh, python, text, ...) so the docs test knows what to run"


def test_only_blocks_that_need_docker_or_a_remote_host_are_skipped():
    others = [(b.id, b.reason) for b in RUN if b.mode == "skip" and not (b.reason or "").startswith(ALLOWED_SKIPS)]
    assert others == [], f"only blocks that need Docker or a remote host may be skipped ({ALLOWED_SKIPS})"


def test_the_docs_have_blocks_to_run():
    for doc in DOCS:
        assert any(b.doc == doc and b.mode != "skip" for b in RUN), f"{doc}: no block is executed"


# ---- small models under the names the docs use, and the reader's own files ---------------------


def _classifier(model_name: str, feature: str, shape: tuple[int, ...], classes: tuple[str, ...], seed: int):
    import keras

    from tfstack import export

    keras.utils.set_random_seed(seed)
    x = keras.Input(shape, name=feature, dtype="float32")
    flat = keras.layers.Flatten()(x) if len(shape) > 1 else x
    out = keras.layers.Dense(len(classes), activation="softmax")(flat)
    rng = np.random.default_rng(seed)
    features = (export.FeatureSpec(name=feature, dtype="float32", shape=shape),)
    # The "training data" the profile describes, and the sample rows, come from one distribution.
    rows = rng.uniform(0, 4, (300, *shape)).astype(np.float32)
    # Untrained: its accuracy is chance, which is what the manifest says (rollout's quality gate reads it).
    return export.ExportSpec(
        model_name=model_name, task="classification", keras_model=keras.Model({feature: x}, out),
        features=features, class_names=classes, sample_inputs={feature: rows[:6]},
        metrics={"accuracy": 1 / len(classes)}, training_config={"epochs": 0}, dataset={"name": model_name},
        data_profile=export.build_profile(features, {feature: rows}, task="classification", class_names=classes,
                                          source="uniform rows"),
    )


MY_TRAINING = """
import numpy as np
import keras

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x[:, 0] + x[:, 1] > 0).astype(int)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
model.fit(x, y, epochs=2, verbose=0)
model.save("churn.keras")
"""


def _legacy_saved_model(path: Path) -> None:
    """A SavedModel exported elsewhere (Keras' own `model.export`): one regression output from x [3]."""
    import keras

    keras.utils.set_random_seed(4)
    x = keras.Input((3,), name="x", dtype="float32")
    keras.Model(x, keras.layers.Dense(1)(x)).export(str(path), verbose=False)


@pytest.fixture(scope="session")
def docs_files(tmp_path_factory) -> Path:
    """A reader's directory: `models/` with digits/1 (pixels [8, 8], ten classes),
    half_plus_two/123 and iris/1, an exported iris SavedModel for rollout's `publish`
    (`exported_savedmodel/`), and the files the README asks readers to bring."""
    from PIL import Image

    from tfstack import export

    root = tmp_path_factory.mktemp("docs")
    reader = root / "reader"
    models = reader / "models"
    export.publish(_classifier("digits", "pixels", (8, 8), tuple("0123456789"), seed=1), models)
    build_half_plus(models / "half_plus_two" / "123")
    iris = ("setosa", "versicolor", "virginica")
    export.publish(_classifier("iris", "features", (4,), iris, seed=2), models)
    candidate = export.publish(_classifier("iris", "features", (4,), iris, seed=3), root / "candidates")
    shutil.copytree(candidate.path, reader / "exported_savedmodel")

    rng = np.random.default_rng(0)
    rows = ["size,colour,label"] + [
        f"{rng.uniform(0, 10):.2f},{('red', 'green', 'blue')[i % 3]},{'big' if i % 2 else 'small'}" for i in range(60)
    ]
    (reader / "data.csv").write_text("\n".join(rows) + "\n")
    for name, low, high in (("cats", 0, 120), ("dogs", 130, 255)):
        folder = reader / "photos" / name
        folder.mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(low, high, size=(12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels, mode="RGB").save(folder / f"{i}.png")
    (reader / "my_training.py").write_text(textwrap.dedent(MY_TRAINING).lstrip())
    (reader / "rows.csv").write_text("a,b,c,d\n" + "\n".join(",".join(f"{v:.3f}" for v in rng.normal(size=4)) for _ in range(6)) + "\n")
    _legacy_saved_model(reader / "exported_saved_model")
    (reader / "request.json").write_text(json.dumps({"instances": [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]}))
    (reader / "monitoring.config").write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    (reader / "ssl.config").write_text(make_pki().ssl_config_text())
    (reader / "labels.csv").write_text("request_id,label\nr1,3\n")
    return reader


@pytest.fixture(scope="session")
def docs_server(docs_files, tmp_path_factory):
    """One server for the blocks that query a running server: digits, and half_plus_two with the
    labels stable and canary (labels at startup need --allow_version_labels_for_unavailable_models)."""
    models = docs_files / "models"
    workdir = tmp_path_factory.mktemp("docs-server")
    config = workdir / "models.config"
    config.write_text(
        "model_config_list {\n"
        f"  config {{ name: 'digits' base_path: '{models / 'digits'}' model_platform: 'tensorflow' }}\n"
        f"  config {{ name: 'half_plus_two' base_path: '{models / 'half_plus_two'}' model_platform: 'tensorflow'\n"
        "    version_labels { key: 'stable' value: 123 } version_labels { key: 'canary' value: 123 } }\n"
        "}\n"
    )
    with start_server(workdir, f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models",
                      model_base_path=None) as running:
        yield running


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFSTACK_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env.update(TFSTACK_TRAIN_EPOCHS="1", TFSTACK_BENCH_DURATION="1", WATCH_SECONDS="2", **extra)
    return env


def _with_ports(body: str, grpc_port: int, rest_port: int) -> str:
    return PORTS.sub(lambda m: f"{m['prefix']}{grpc_port if m['port'] == '8500' else rest_port}", body)


def _run(block: Block, cwd: Path, grpc_port: int, rest_port: int, *, prelude: str = "",
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    body = _with_ports(block.body, grpc_port, rest_port)
    if RUNNABLE[block.lang] == "python":
        command = [sys.executable, "-c", body]
    else:
        command = ["bash", "-c", f"set -euo pipefail\n{prelude}{body}"]
    return subprocess.run(command, cwd=cwd, env=env or _environment(), capture_output=True, text=True, timeout=TIMEOUT)


def _failed(block: Block, done: subprocess.CompletedProcess[str]) -> str:
    return (f"{block.id} failed ({done.returncode}):\n{block.body}\n--- stdout\n{done.stdout[-5000:]}\n"
            f"--- stderr\n{done.stderr[-8000:]}")


def _sandbox(tmp_path: Path, reader: Path) -> Path:
    """A copy of the reader's directory (blocks publish, retire and log into it)."""
    cwd = tmp_path / "work"
    shutil.copytree(reader, cwd, symlinks=True)
    (cwd / "models.config").write_text(logged_models_config({"digits": (cwd / "models" / "digits", cwd / "logs" / "digits")}))
    return cwd


def _repository_view(tmp_path: Path) -> Path:
    """The checkout as a reader has it, without what runs write (models/, runs/)."""
    view = tmp_path / "repo"
    view.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in NOT_IN_REPO_VIEW:
            (view / entry.name).symlink_to(entry)
    return view


# The servers a block starts in the background are stopped when it ends, whatever happens.
STOP_BACKGROUND = "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n"
SERVED_DOCS = ("README.md", "client/README.md")


@pytest.mark.parametrize("block", [b for b in RUN if b.doc in SERVED_DOCS], ids=lambda b: b.id)
def test_block_runs(block: Block, request, tmp_path):
    if block.skip:
        pytest.skip(block.skip)
    if block.mode == "servers":
        _run_servers(block, _sandbox(tmp_path, request.getfixturevalue("docs_files")))
        return
    if block.mode == "repo":
        env = _environment(DEMO_GRPC_PORT=str(free_port()), DEMO_REST_PORT=str(free_port()),
                           PYTEST_ADDOPTS="--collect-only -q -p no:cacheprovider")
        done = _run(block, _repository_view(tmp_path), 8500, 8501, env=env)
        assert done.returncode == 0, _failed(block, done)
        return
    cwd = _sandbox(tmp_path, request.getfixturevalue("docs_files"))
    if re.search(r"^tfstack serve .*&", block.body.replace("\\\n", " "), re.M):
        done = _run(block, cwd, free_port(), free_port(), prelude=STOP_BACKGROUND)  # its own server
    else:
        server = request.getfixturevalue("docs_server")
        done = _run(block, cwd, server.grpc_port, server.rest_port)
    assert done.returncode == 0, _failed(block, done)


def _run_servers(block: Block, cwd: Path) -> None:
    """Each command of the block is a server: it must come up (log its REST API), and stop
    cleanly on Ctrl-C (SIGINT), as a reader running it in a terminal would see."""
    commands = [line for line in block.body.replace("\\\n", " ").splitlines() if line.strip()]
    assert commands, f"{block.id}: no command"
    for command in commands:
        assert command.startswith("tfstack serve "), f"{block.id}: not a server command: {command}"
        log = cwd / f"server-{free_port()}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(_sigterm_when_parent_dies(["bash", "-c", "exec " + _with_ports(command, free_port(), free_port())]),
                                       cwd=cwd, env=_environment(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while "Exporting HTTP/REST API at:" not in log.read_text(errors="replace"):
                assert process.poll() is None, f"{block.id}: {command}\nexited {process.returncode}:\n{log.read_text()[-4000:]}"
                assert time.monotonic() < deadline, f"{block.id}: {command}\nnot up in 120 s:\n{log.read_text()[-4000:]}"
                time.sleep(0.1)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert code == 0, f"{block.id}: {command}\nexited {code} on Ctrl-C:\n{log.read_text()[-4000:]}"


# ---- docs/rollout.md: its walk-through starts its own server --------------------------------

ROLLOUT_BLOCKS = [b for b in RUN if b.doc == "docs/rollout.md"]
WALKTHROUGH = next(b for b in ROLLOUT_BLOCKS if b.lang == "sh" and "init iris" in b.body)


def test_rollout_walkthrough_restart_and_traffic(docs_files, tmp_path):
    """docs/rollout.md's two runnable blocks. The walk-through as written (watch for 2 s instead of 600), then item 8: the documented
    server command starts again on the config the walk-through left, labels included (TF Serving
    only allows that with --allow_version_labels_for_unavailable_models, spec §4.5), and the
    traffic-split snippet runs against it."""
    cwd = _sandbox(tmp_path, docs_files)
    (cwd / "models.config").unlink()  # the walk-through's init writes its own
    done = _run(WALKTHROUGH, cwd, free_port(), free_port(), prelude=STOP_BACKGROUND)
    assert done.returncode == 0, _failed(WALKTHROUGH, done)
    config = (cwd / "models.config").read_text()
    assert "version_labels" in config  # a restart has labels to assign before anything loads

    serve = re.search(r"^tfstack serve .*$", WALKTHROUGH.body.replace("\\\n", " "), re.M)
    assert serve, "the walk-through starts a server"
    traffic = next(b for b in ROLLOUT_BLOCKS if b.lang == "python" and "CanarySplit" in b.body)
    assert [b.id for b in ROLLOUT_BLOCKS if b not in (WALKTHROUGH, traffic)] == [], "a rollout.md block nothing runs"
    script = (
        f"{serve.group(0)}\n"
        "tfstack status iris --rest http://127.0.0.1:8501 --wait 120\n"
        f"python - <<'SNIPPET'\n{traffic.body}SNIPPET\n"
    )
    restart = Block(WALKTHROUGH.doc, WALKTHROUGH.line, "sh", script)
    again = _run(restart, cwd, free_port(), free_port(), prelude=STOP_BACKGROUND)
    assert again.returncode == 0, f"restart or {traffic.id} failed:\n{again.stdout[-3000:]}\n{again.stderr[-6000:]}"
