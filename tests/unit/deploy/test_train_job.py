"""deploy/k8s/training/train-job.yaml, checked without a cluster: every document against the
Kubernetes JSON schemas that kubernetes-validate ships (strict), and the wiring that makes the
pods one TF_CONFIG cluster: the container's script is run with `sh` for each index, with a stand-in
`tfstack` that records what it was given, and the command line is parsed by the real `tfstack train`."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tfstack.training.cli import train as train_command

ROOT = Path(__file__).resolve().parents[3]
JOB_FILE = ROOT / "deploy" / "k8s" / "training" / "train-job.yaml"
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def resources() -> dict[str, dict]:
    docs = [doc for doc in yaml.safe_load_all(JOB_FILE.read_text()) if doc]
    found = {doc["kind"]: doc for doc in docs}
    assert sorted(found) == ["Job", "PersistentVolumeClaim", "Service"] and len(docs) == 3
    return found


def pod(resources) -> dict:
    return resources["Job"]["spec"]["template"]


def trainer(resources) -> dict:
    (only,) = pod(resources)["spec"]["containers"]
    return only


def env(resources) -> dict[str, str]:
    return {e["name"]: e["value"] for e in trainer(resources)["env"]}


def run_script(resources, index: int, tmp_path: Path) -> tuple[dict, list[str]]:
    """Run the container's shell script as pod `index` would; what `tfstack` received."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / f"record-{index}.json"
    fake = bin_dir / "tfstack"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"json.dump({{'tf_config': os.environ['TF_CONFIG'], 'argv': sys.argv[1:]}}, open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    container = trainer(resources)
    process_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "JOB_COMPLETION_INDEX": str(index),  # set by the Job controller in Indexed mode
        **env(resources),
    }
    subprocess.run([*container["command"], *container["args"]], env=process_env, check=True, timeout=30)
    recorded = json.loads(record.read_text())
    return json.loads(recorded["tf_config"]), recorded["argv"]


# -------------------------------------------------------------------------------- the schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_is_valid_kubernetes(resources, version):
    for doc in resources.values():
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        pytest.param("Job", lambda d: d["spec"].update(completions="2"), id="completions-as-string"),
        pytest.param("Job", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(args="train"), id="args-not-a-list"),
        pytest.param("Service", lambda d: d["spec"].update(publishNotReady=True), id="unknown-field"),
    ],
)
def test_validation_rejects_a_broken_copy(resources, kind, breakage):
    broken = copy.deepcopy(resources[kind])
    breakage(broken)

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# -------------------------------------------------------------------------------- the wiring


def test_one_indexed_pod_per_worker_all_running_at_once(resources):
    spec = resources["Job"]["spec"]

    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(env(resources)["WORKERS"]) >= 2
    # A failed worker restarts in place and resumes from the backup, instead of failing the Job.
    assert pod(resources)["spec"]["restartPolicy"] == "OnFailure"
    assert spec["backoffLimit"] >= 1


def test_the_headless_service_gives_every_worker_pod_a_dns_name(resources):
    service, template = resources["Service"], pod(resources)

    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert template["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for p in trainer(resources)["ports"]}
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]] == port["port"] == int(env(resources)["WORKER_PORT"])


def test_each_pod_gets_the_tf_config_of_its_index(resources, tmp_path):
    job = resources["Job"]["metadata"]["name"]
    service = resources["Service"]["metadata"]["name"]
    workers, port = int(env(resources)["WORKERS"]), env(resources)["WORKER_PORT"]
    # Indexed Job pods are named <job>-<index>, resolvable as <job>-<index>.<subdomain>.
    expected_cluster = {"worker": [f"{job}-{i}.{service}:{port}" for i in range(workers)]}

    for index in range(workers):
        tf_config, _ = run_script(resources, index, tmp_path)
        assert tf_config == {"cluster": expected_cluster, "task": {"type": "worker", "index": index}}


def test_the_command_is_a_valid_multi_worker_tfstack_train_on_the_mounted_volumes(resources, tmp_path):
    _, argv = run_script(resources, 0, tmp_path)
    assert argv[0] == "train"

    params = train_command.make_context("train", argv[1:]).params

    assert params["strategy"] == "multi-worker"
    mounts = {m["name"]: m["mountPath"] for m in trainer(resources)["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod(resources)["spec"]["volumes"]}
    # An explicit run directory on the shared runs volume: every worker, and every restart, finds
    # the chief's backup there.
    assert params["run_dir"].startswith(mounts["runs"] + "/")
    assert claims["runs"] == resources["PersistentVolumeClaim"]["metadata"]["name"]
    assert resources["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    # The chief publishes into the model repository that the TF Serving manifests serve.
    assert params["base_path"] == mounts["models"]
    repository = yaml.safe_load((ROOT / "deploy" / "k8s" / "pvc.yaml").read_text())
    assert claims["models"] == repository["metadata"]["name"]
    assert not any(m.get("readOnly") for m in trainer(resources)["volumeMounts"])
