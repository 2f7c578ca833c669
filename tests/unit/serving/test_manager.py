"""The version lifecycle in-process: discovery, policies, availability-preserving transitions, labels, reloads."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tfstack.serving import Code, ServerCore, State, StatusError
from tfstack.serving.server._manager import ManagerOptions, ModelManager, aspired_versions, discover_versions
from tfstack.serving.server._model_config import parse_model_config_text


def _config(*models: tuple[str, Path], extra: str = ""):
    body = "".join(
        f"config {{ name: '{name}' base_path: '{base}' model_platform: 'tensorflow' {extra} }}" for name, base in models
    )
    return parse_model_config_text(f"model_config_list {{ {body} }}")


class _Repo:
    """A fresh model base path whose versions are copies of the session-built half_plus_two."""

    def __init__(self, root: Path, source: Path) -> None:
        self.root, self.source = root, source

    def base(self, name: str = "m") -> Path:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return self.root / name

    def add(self, version: str, *, name: str = "m", broken: bool = False) -> Path:
        target = self.base(name) / version
        if broken:
            target.mkdir()  # a version directory without a SavedModel: its load fails
        else:
            shutil.copytree(self.source, target)
        return target


@pytest.fixture
def repo(tmp_path: Path, half_plus_two_base: Path) -> _Repo:
    return _Repo(tmp_path, half_plus_two_base / "123")


@pytest.fixture
async def manager_factory():
    made: list[tuple[ServerCore, ModelManager]] = []

    def make(**options) -> tuple[ServerCore, ModelManager]:
        core = ServerCore(inference_threads=2)
        manager = ModelManager(core, ManagerOptions(file_system_poll_wait_seconds=0, **options))
        made.append((core, manager))
        return core, manager

    yield make
    for core, manager in made:
        await manager.close()
        core.close()


def test_discovery_follows_simple_atoi(tmp_path: Path):
    for name in ("00000123", "7", "non_numerical_child", "2.denied", "20170111173521"):
        (tmp_path / name).mkdir()
    (tmp_path / "42").write_text("a file counts too")
    (tmp_path / "0042").mkdir()  # duplicate of 42: one of them is used
    found = discover_versions("m", str(tmp_path))
    assert sorted(found) == [7, 42, 123, 20170111173521]
    assert found[123].endswith("00000123")
    with pytest.raises(StatusError) as info:
        discover_versions("m", str(tmp_path / "missing"))
    assert info.value.message.startswith(f"Could not find base path {tmp_path / 'missing'} for servable m")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [42]),
        ("model_version_policy { latest { num_versions: 3 } }", [30, 33, 42]),
        ("model_version_policy { all {} }", [7, 30, 33, 42]),
        ("model_version_policy { specific { versions: 7 versions: 99 } }", [7]),
        ("model_version_policy { specific {} }", []),
    ],
)
def test_version_policies(policy, expected):
    (entry,) = _config(("m", Path("/m")), extra=policy).model_config_list.config
    found = {v: f"/m/{v}" for v in (7, 30, 33, 42)}
    assert sorted(aspired_versions(entry, found)) == expected


def _states(core: ServerCore, name: str = "m") -> dict[int, State]:
    try:
        rows = core.model_status(name)
    except StatusError as exc:  # a model the config names but no version of which is known yet
        if exc.code is not Code.NOT_FOUND:
            raise
        return {}
    return {row.version: row.state for row in rows}


async def test_new_version_loads_before_the_old_one_unloads(repo: _Repo, manager_factory):
    repo.add("1")
    core, manager = manager_factory()
    await manager.apply_config(_config(("m", repo.base())))
    assert _states(core) == {1: State.AVAILABLE}
    held = core.resolve("m")  # a request in flight keeps its servable through the swap
    repo.add("002")
    await manager.poll()
    await _until(lambda: _states(core) == {2: State.AVAILABLE, 1: State.END})
    assert core.resolve("m").version == 2 and held.version == 1
    shutil.rmtree(repo.base() / "002")
    await manager.poll()  # latest{1} now aspires version 1 again
    await _until(lambda: _states(core) == {2: State.END, 1: State.AVAILABLE})


async def test_failed_version_ends_with_its_error_and_the_old_one_keeps_serving(repo: _Repo, manager_factory):
    repo.add("1")
    core, manager = manager_factory(max_num_load_retries=1, load_retry_interval_micros=0)
    await manager.apply_config(_config(("m", repo.base())))
    repo.add("2", broken=True)
    await manager.poll()
    await _until(lambda: _states(core).get(2) is State.END)
    (row,) = core.model_status("m", 2)
    # TF Serving's text for a directory without saved_model.pb (session_bundle/oss/session_bundle_util.cc).
    assert row.error_code is Code.NOT_FOUND
    assert "Specified file path does not appear to contain a SavedModel bundle" in row.error_message
    assert core.resolve("m").version == 1
    await manager.poll()  # not retried while it stays aspired
    assert _states(core) == {2: State.END, 1: State.AVAILABLE}


async def test_startup_reports_versions_that_did_not_become_available(repo: _Repo, manager_factory):
    repo.add("1", broken=True)
    core, manager = manager_factory(max_num_load_retries=0)
    with pytest.raises(StatusError) as info:
        await manager.apply_config(_config(("m", repo.base())), word="servable")
    assert info.value.code is Code.UNKNOWN
    assert info.value.message.startswith("1 servable(s) did not become available: {{name: m version: 1} due to error: NOT_FOUND: ")
    assert info.value.message.endswith("}, }")


async def test_reload_replaces_models_and_keeps_end_entries(repo: _Repo, manager_factory):
    repo.add("1", name="a")
    repo.add("5", name="b")
    core, manager = manager_factory()
    await manager.apply_config(_config(("a", repo.base("a"))))
    await manager.apply_config(_config(("b", repo.base("b"))))
    assert core.resolve("b").version == 5
    await _until(lambda: _states(core, "a") == {1: State.END})
    with pytest.raises(StatusError, match=r"Latest\(a\)"):
        core.resolve("a")


async def test_labels_follow_tf_serving_rules(repo: _Repo, manager_factory):
    repo.add("1")
    core, manager = manager_factory()
    labelled = lambda v: _config(("m", repo.base()), extra=f"version_labels {{ key: 'stable' value: {v} }}")  # noqa: E731
    with pytest.raises(StatusError) as info:  # labels are checked before the models load
        await manager.apply_config(labelled(1))
    assert info.value.code is Code.FAILED_PRECONDITION
    assert info.value.message == (
        "Request to assign label to version 1 of model m, which is not currently available for inference"
    )
    await manager.apply_config(_config(("m", repo.base())))
    await manager.apply_config(labelled(1))
    assert core.resolve("m", label="stable").version == 1
    with pytest.raises(StatusError, match="version 2 of model m"):
        await manager.apply_config(labelled(2))


async def test_allow_labels_for_unavailable_models_only_for_new_labels(repo: _Repo, manager_factory):
    repo.add("1")
    repo.add("2")
    core, manager = manager_factory(allow_version_labels_for_unavailable_models=True)
    policy = "model_version_policy { specific { versions: 1 versions: 2 } }"
    await manager.apply_config(
        _config(("m", repo.base()), extra=f"{policy} version_labels {{ key: 'stable' value: 1 }}"), word="servable"
    )
    assert core.resolve("m", label="stable").version == 1
    with pytest.raises(StatusError, match="version 3 of model m"):  # moving a label needs an available target
        await manager.apply_config(_config(("m", repo.base()), extra=f"{policy} version_labels {{ key: 'stable' value: 3 }}"))


async def _until(predicate, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)


async def test_config_file_polling_applies_changes_and_survives_bad_files(
    repo: _Repo, manager_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    repo.add("1", name="a")
    repo.add("1", name="b")
    config_file = tmp_path / "models.config"

    def write(*names: str) -> None:
        body = "".join(
            f"config {{ name: '{n}' base_path: '{repo.base(n)}' model_platform: 'tensorflow' }}" for n in names
        )
        staging = tmp_path / "models.config.tmp"  # atomic, so a poll never reads half a file
        staging.write_text(f"model_config_list {{ {body} }}")
        staging.replace(config_file)

    write("a")
    core, manager = manager_factory()
    from tfstack.serving.server._model_config import read_model_config_file

    await manager.apply_config(read_model_config_file(config_file))
    manager.start(config_file=str(config_file), config_poll_seconds=0.05)
    (tmp_path / "bad.tmp").write_text("improperly formatted file")  # logged, the old config stays
    (tmp_path / "bad.tmp").replace(config_file)
    await _until(lambda: "Failed to read ModelServerConfig file" in caplog.text)
    assert core.resolve("a").version == 1
    write("b")
    await _until(lambda: _states(core, "a") == {1: State.END} and "b" in core.model_names()
                 and _states(core, "b") == {1: State.AVAILABLE})
