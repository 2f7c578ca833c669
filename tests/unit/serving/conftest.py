"""Shared fixtures for serving unit tests (the REST helper's tests use them too).

Fixtures:
  half_plus_two_base (session): a model repository dir with version 123 of half_plus_two
      (tests/support/models.py), i.e. `<tmp>/half_plus_two/123`.
  half_plus_two_servable (session): that version loaded as a `serving.Servable`
      (model_name "half_plus_two", version 123).
  core (function): a `serving.ServerCore` where "half_plus_two" v123 is AVAILABLE, with label
      "stable" -> 123; closed after the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tfstack.serving import ServerCore, State, load_servable
from tests.support.models import build_half_plus


@pytest.fixture(scope="session")
def half_plus_two_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("repo") / "half_plus_two"
    build_half_plus(base / "123")
    return base


@pytest.fixture(scope="session")
def half_plus_two_servable(half_plus_two_base: Path):
    return load_servable("half_plus_two", 123, half_plus_two_base / "123")


@pytest.fixture
def core(half_plus_two_servable):
    server_core = ServerCore(inference_threads=2)
    server_core.set_version_state("half_plus_two", 123, State.LOADING)
    server_core.set_version_state("half_plus_two", 123, State.AVAILABLE, servable=half_plus_two_servable)
    server_core.set_labels("half_plus_two", {"stable": 123})
    yield server_core
    server_core.close()
