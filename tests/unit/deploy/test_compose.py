"""docker-compose.yml, checked without a Docker engine: the compose specification's JSON schema
(vendored by check-jsonschema, loaded from the package, no network) plus the things that decide
whether real TF Serving serves what the trainer publishes."""

from __future__ import annotations

import copy
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

from tests.unit.deploy.tfserving_protos import (
    parse_batching_parameters,
    parse_model_server_config,
    parse_monitoring_config,
)

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
TF_SERVING_IMAGE = "tensorflow/serving:2.21.0"


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    return json.loads(vendored.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def schema_errors(schema: dict, document: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def flag(command: list[str], name: str) -> str:
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert values, f"--{name} missing from {command}"
    return values[-1]  # later duplicates win, as in TF Serving


def volumes(service: dict) -> list[tuple[str, str, str]]:
    """(host, container, mode) for each short-syntax bind mount."""
    mounts = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax here: {entry!r}"
        host, container, *mode = entry.split(":")
        mounts.append((host, container, mode[0] if mode else "rw"))
    return mounts


def host_file(service: dict, container_path: str) -> Path:
    """The host file a container path comes from, through the service's bind mounts."""
    target = PurePosixPath(container_path)
    for host, container, _ in volumes(service):
        if target == PurePosixPath(container) or PurePosixPath(container) in target.parents:
            return ROOT / host / target.relative_to(container)
    raise AssertionError(f"{container_path} is not mounted into the service: {service.get('volumes')}")


# -------------------------------------------------------------------------------- the schema


def test_compose_file_matches_the_compose_specification(compose_schema, compose):
    assert schema_errors(compose_schema, compose) == []


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda c: c["services"]["tfserving"].update(imagee="typo"), id="unknown-service-key"),
        pytest.param(lambda c: c["services"]["tfserving"].update(ports={"8500": 8500}), id="ports-not-a-list"),
        pytest.param(
            lambda c: c["services"]["tfserving"]["depends_on"]["trainer"].update(condition="service_finished"),
            id="bad-depends-on-condition",
        ),
        pytest.param(lambda c: c["services"]["prometheus"].update(profiles="monitoring"), id="profiles-not-a-list"),
    ],
)
def test_schema_rejects_a_broken_copy(compose_schema, compose, breakage):
    broken = copy.deepcopy(compose)
    breakage(broken)

    assert schema_errors(compose_schema, broken), "the schema accepted a broken compose file"


def test_check_jsonschema_cli_accepts_ours_and_rejects_a_broken_copy(compose, tmp_path):
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    good = subprocess.run([*command, str(COMPOSE)], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr

    broken = copy.deepcopy(compose)
    broken["services"]["tfserving"]["restart"] = ["unless-stopped"]
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    bad = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    assert "restart" in bad.stdout + bad.stderr


# -------------------------------------------------------------------------------- tfserving


def test_tfserving_runs_the_pinned_official_image(compose):
    assert compose["services"]["tfserving"]["image"] == TF_SERVING_IMAGE


def test_tfserving_publishes_grpc_8500_and_rest_8501(compose):
    ports = compose["services"]["tfserving"]["ports"]

    published = {str(p).rsplit(":", 1)[-1]: str(p) for p in ports}
    assert set(published) >= {"8500", "8501"}
    assert all(published[p].startswith(f"{p}:") or published[p].endswith(f":{p}:{p}") for p in ("8500", "8501"))


def test_tfserving_mounts_the_repository_read_only_where_the_trainer_publishes(compose):
    tfserving, trainer = compose["services"]["tfserving"], compose["services"]["trainer"]
    config = parse_model_server_config(host_file(tfserving, flag(tfserving["command"], "model_config_file")).read_text())

    for model in config.model_config_list.config:
        host, container, mode = next(
            m for m in volumes(tfserving) if PurePosixPath(model.base_path).is_relative_to(m[1])
        )
        assert mode == "ro", f"{model.base_path} must come from a read-only mount, got {host}:{container}:{mode}"
        # The trainer writes the same host directory, under the same container path it publishes to.
        trainer_mount = next(m for m in volumes(trainer) if m[0] == host)
        assert trainer_mount[2] == "rw"
        assert flag_value(trainer["command"], "--base-path") == trainer_mount[1]
        assert PurePosixPath(model.base_path).name == flag_value(trainer["command"], "--model-name")


def flag_value(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_tfserving_polls_its_model_config_file(compose):
    command = compose["services"]["tfserving"]["command"]

    assert flag(command, "model_config_file").startswith("/etc/tfserving/")
    assert int(flag(command, "model_config_file_poll_wait_seconds")) > 0
    assert int(flag(command, "file_system_poll_wait_seconds")) > 0


def test_every_config_file_is_mounted_read_only_and_parses_as_tf_serving_text_proto(compose):
    tfserving = compose["services"]["tfserving"]
    command = tfserving["command"]
    assert flag(command, "enable_batching") == "true"  # TF Serving refuses a batching file without it

    models = parse_model_server_config(host_file(tfserving, flag(command, "model_config_file")).read_text())
    monitoring = parse_monitoring_config(host_file(tfserving, flag(command, "monitoring_config_file")).read_text())
    batching = parse_batching_parameters(host_file(tfserving, flag(command, "batching_parameters_file")).read_text())

    assert [m.name for m in models.model_config_list.config] == ["digits"]
    assert all(m.model_platform == "tensorflow" and m.base_path.startswith("/") for m in models.model_config_list.config)
    assert monitoring.prometheus_config.enable
    assert batching.max_batch_size.value > 0 and batching.num_batch_threads.value > 0
    config_mounts = [m for m in volumes(tfserving) if m[1] == "/etc/tfserving"]
    assert config_mounts and config_mounts[0][2] == "ro"


def test_prometheus_scrapes_tf_servings_metrics_path_on_the_rest_port(compose):
    prometheus, tfserving = compose["services"]["prometheus"], compose["services"]["tfserving"]
    scrape = yaml.safe_load(host_file(prometheus, "/etc/prometheus/prometheus.yml").read_text())
    monitoring = parse_monitoring_config(
        host_file(tfserving, flag(tfserving["command"], "monitoring_config_file")).read_text()
    )

    job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "tfserving")
    assert job["metrics_path"] == (monitoring.prometheus_config.path or "/monitoring/prometheus/metrics")
    assert job["static_configs"][0]["targets"] == ["tfserving:8501"]
    assert prometheus["profiles"] == ["monitoring"], "prometheus stays optional"


def test_trainer_builds_the_tfstack_image(compose):
    build = compose["services"]["trainer"]["build"]

    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file()
    assert 'ENTRYPOINT ["tfstack"]' in dockerfile.read_text()
    assert compose["services"]["trainer"]["command"][0] == "train"
    assert compose["services"]["tfserving"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
