"""deploy/k8s manifests, checked without a cluster: every document against the Kubernetes JSON
schemas that kubernetes-validate ships (strict: unknown fields are errors), and the wiring that
makes replicas serve the shared repository (probes, ports, volumes, config, autoscaling, the
publisher Job that writes the repository, disruption budget, Pod Security "restricted")."""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.tfserving_protos import (
    parse_batching_parameters,
    parse_model_server_config,
    parse_monitoring_config,
)

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes we claim to support and the newest schema the package ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
TF_SERVING_IMAGE = "tensorflow/serving:2.21.0"
MANIFESTS = sorted(K8S.glob("*.yaml"))


def load_all() -> list[dict]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def resources() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for doc in load_all():
        assert doc["kind"] not in found, f"one {doc['kind']} per example, found two"
        found[doc["kind"]] = doc
    return found


def container(resources: dict[str, dict], kind: str = "Deployment") -> dict:
    (only,) = resources[kind]["spec"]["template"]["spec"]["containers"]
    return only


def arg(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert values, f"--{name} missing from {args}"
    return values[-1]


def config_text(resources: dict[str, dict], container_path: str) -> str:
    """The ConfigMap entry that appears at `container_path` through the Deployment's mounts."""
    pod = resources["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in container(resources)["volumeMounts"] if container_path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == resources["ConfigMap"]["metadata"]["name"]
    key = container_path[len(mount["mountPath"]) + 1 :]
    return resources["ConfigMap"]["data"][key]


# -------------------------------------------------------------------------------- the schemas


def test_the_example_has_every_piece():
    assert MANIFESTS, f"no manifests under {K8S}"
    assert sorted(doc["kind"] for doc in load_all()) == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PersistentVolumeClaim", "PodDisruptionBudget",
        "Service",
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path, version):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        pytest.param("Deployment", lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagee="x"), id="unknown-field"),
        pytest.param(
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(containerPort="8500"),
            id="port-as-string",
        ),
        pytest.param("HorizontalPodAutoscaler", lambda d: d["spec"].update(targetCPUUtilizationPercentage=70), id="hpa-v1-field-in-v2"),
        pytest.param("Service", lambda d: d["spec"]["ports"][0].pop("port"), id="service-port-missing"),
        pytest.param("PersistentVolumeClaim", lambda d: d["spec"].update(accessModes="ReadOnlyMany"), id="access-modes-not-a-list"),
    ],
)
def test_validation_rejects_a_broken_copy(resources, kind, breakage):
    broken = copy.deepcopy(resources[kind])
    breakage(broken)

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# -------------------------------------------------------------------------------- the wiring


def test_deployment_runs_pinned_tf_serving_polling_the_mounted_config(resources):
    args = container(resources)["args"]

    assert container(resources)["image"] == TF_SERVING_IMAGE
    assert int(arg(args, "model_config_file_poll_wait_seconds")) > 0
    assert int(arg(args, "file_system_poll_wait_seconds")) > 0
    assert arg(args, "enable_batching") == "true"
    models = parse_model_server_config(config_text(resources, arg(args, "model_config_file")))
    parse_monitoring_config(config_text(resources, arg(args, "monitoring_config_file")))
    parse_batching_parameters(config_text(resources, arg(args, "batching_parameters_file")))
    assert [m.name for m in models.model_config_list.config] == ["digits"]


def test_configmap_says_what_deploy_tfserving_says(resources):
    data = resources["ConfigMap"]["data"]
    local = ROOT / "deploy" / "tfserving"

    for key, parse in [
        ("models.config", parse_model_server_config),
        ("monitoring.config", parse_monitoring_config),
        ("batching.config", parse_batching_parameters),
    ]:
        assert parse(data[key]) == parse((local / key).read_text()), f"{key} differs from deploy/tfserving/{key}"


@pytest.mark.parametrize("probe_name", ["startupProbe", "readinessProbe"])
def test_startup_and_readiness_probes_ask_for_the_served_models_status_on_the_rest_port(resources, probe_name):
    """TF Serving's REST model-status endpoint (GET /v1/models/<name>, spec §1.4) answers only once
    the server has loaded its initial models, and 404 for a model it does not serve."""
    served = container(resources)
    models = parse_model_server_config(config_text(resources, arg(served["args"], "model_config_file")))
    ports = {p["name"]: p["containerPort"] for p in served["ports"]}

    probe = served[probe_name]["httpGet"]
    assert probe["path"] in {f"/v1/models/{m.name}" for m in models.model_config_list.config}
    assert ports[probe["port"]] == 8501
    assert ports[served["livenessProbe"]["tcpSocket"]["port"]] in (8500, 8501)
    assert set(ports.values()) == {8500, 8501}


def test_startup_probe_gives_a_slow_model_load_minutes_before_liveness_can_restart_it(resources):
    startup = container(resources)["startupProbe"]

    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert "initialDelaySeconds" not in container(resources)["livenessProbe"], "the startup probe covers the load"


def test_container_declares_cpu_and_memory_requests_and_limits(resources):
    resources_ = container(resources)["resources"]

    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources_[section])


def test_tf_serving_reads_the_claim_the_publisher_job_writes(resources):
    """One workable way to get versions onto the volume: a ReadWriteMany claim that the publisher
    Job mounts read-write and publishes into (atomically, on the same filesystem), and that every
    TF Serving replica mounts read-only at the path models.config names."""
    claim = resources["PersistentVolumeClaim"]
    serving_pod = resources["Deployment"]["spec"]["template"]["spec"]
    job_pod = resources["Job"]["spec"]["template"]["spec"]
    models = parse_model_server_config(config_text(resources, arg(container(resources)["args"], "model_config_file")))

    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    serving_volume = next(v for v in serving_pod["volumes"] if "persistentVolumeClaim" in v)
    serving_mount = next(m for m in container(resources)["volumeMounts"] if m["name"] == serving_volume["name"])
    assert serving_volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"], "readOnly": True}
    assert serving_mount["readOnly"] is True
    assert all(m.base_path.startswith(serving_mount["mountPath"] + "/") for m in models.model_config_list.config)

    job_volume = next(v for v in job_pod["volumes"] if "persistentVolumeClaim" in v)
    job_mount = next(m for m in container(resources, "Job")["volumeMounts"] if m["name"] == job_volume["name"])
    assert job_volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert not job_volume["persistentVolumeClaim"].get("readOnly") and not job_mount.get("readOnly")
    args = container(resources, "Job")["args"]
    base_path, model_name = args[args.index("--base-path") + 1], args[args.index("--model-name") + 1]
    assert args[0] in ("train", "export")
    assert [f"{base_path}/{model_name}"] == [m.base_path for m in models.model_config_list.config]
    assert base_path == serving_mount["mountPath"] == job_mount["mountPath"]
    # Same UID/GID on both sides, so TF Serving can read what the Job writes.
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        assert serving_pod["securityContext"][key] == job_pod["securityContext"][key]


def _restricted_violations(pod: dict) -> list[str]:
    """The Pod Security Standards "restricted" profile's rules (kubernetes.io/docs/concepts/security/
    pod-security-standards), as far as they concern these manifests."""
    problems = []
    pod_context = pod.get("securityContext", {})
    allowed_volumes = {"configMap", "emptyDir", "persistentVolumeClaim", "projected", "secret", "downwardAPI", "csi", "ephemeral"}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            problems.append(f"volume {volume['name']} uses {sorted(kinds - allowed_volumes)}")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    for c in pod.get("initContainers", []) + pod["containers"]:
        context = c.get("securityContext", {})
        name = c["name"]
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True):
            problems.append(f"{name}: runAsNonRoot must be true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost, got {seccomp}")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
        for port in c.get("ports", []):
            if port.get("hostPort"):
                problems.append(f"{name}: hostPort")
    return problems


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_meet_the_restricted_pod_security_standard(resources, kind):
    assert _restricted_violations(resources[kind]["spec"]["template"]["spec"]) == []


def test_the_restricted_check_catches_a_root_container(resources):
    pod = copy.deepcopy(resources["Deployment"]["spec"]["template"]["spec"])
    pod["securityContext"]["runAsNonRoot"] = False
    pod["containers"][0]["securityContext"].pop("runAsNonRoot")
    pod["containers"][0]["securityContext"].pop("capabilities")

    assert _restricted_violations(pod) == ["tfserving: runAsNonRoot must be true", "tfserving: capabilities must drop ALL"]


def test_tf_serving_root_filesystem_is_read_only_with_a_scratch_tmp(resources):
    served = container(resources)

    assert served["securityContext"]["readOnlyRootFilesystem"] is True
    assert any(m["mountPath"] == "/tmp" for m in served["volumeMounts"])


def test_disruption_budget_keeps_a_ready_replica_of_the_deployment(resources):
    budget, deployment = resources["PodDisruptionBudget"], resources["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < resources["HorizontalPodAutoscaler"]["spec"]["minReplicas"]


def test_service_exposes_8500_and_8501_of_the_deployments_pods(resources):
    service, deployment = resources["Service"], resources["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    named = {p["name"]: p["containerPort"] for p in container(resources)["ports"]}

    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {p["port"]: named[p["targetPort"]] for p in service["spec"]["ports"]} == {8500: 8500, 8501: 8501}


def test_hpa_scales_the_deployment_on_cpu(resources):
    hpa, deployment = resources["HorizontalPodAutoscaler"], resources["Deployment"]

    assert hpa["apiVersion"] == "autoscaling/v2"
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert hpa["spec"]["minReplicas"] >= 2, "one replica is no scale-out"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_prometheus_annotations_point_at_tf_servings_metrics(resources):
    annotations = resources["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    monitoring = parse_monitoring_config(config_text(resources, arg(container(resources)["args"], "monitoring_config_file")))

    assert annotations["prometheus.io/path"] == monitoring.prometheus_config.path
    assert annotations["prometheus.io/port"] == "8501"
