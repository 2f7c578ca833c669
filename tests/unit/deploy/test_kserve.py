"""deploy/kserve, checked without a cluster: each InferenceService against a JSON schema for the
fields we use, written from KServe v0.20.0's CRD (kserve-inferenceservice.schema.json says which
file it follows); the pod-level fields against Kubernetes' own schemas (kubernetes-validate);
the TF Serving model configs as text protos; and the wiring between them."""

from __future__ import annotations

import copy
import importlib.metadata
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.tfserving_protos import parse_model_server_config

ROOT = Path(__file__).resolve().parents[3]
KSERVE = ROOT / "deploy" / "kserve"
SCHEMA = Path(__file__).with_name("kserve-inferenceservice.schema.json")
KUBERNETES_VERSION = kubernetes_validate.latest_version()
# Where KServe mounts a storageUri in the predictor container (pkg/constants DefaultModelLocalMountPath).
MODEL_MOUNT = "/mnt/models"


def load(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((KSERVE / name).read_text()) if d]
    return doc


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def stable() -> dict:
    return load("inferenceservice.yaml")


@pytest.fixture(scope="module")
def canary() -> dict:
    return load("inferenceservice-canary.yaml")


@pytest.fixture(scope="module")
def config_map() -> dict:
    return load("model-config.yaml")


def errors(validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def config_arg(isvc: dict) -> str:
    (value,) = [a.split("=", 1)[1] for a in isvc["spec"]["predictor"]["model"]["args"] if a.startswith("--model_config_file=")]
    return value


def served_config(isvc: dict, config_map: dict):
    """The models.config TF Serving reads in this InferenceService's pod: arg -> mount -> ConfigMap key."""
    predictor = isvc["spec"]["predictor"]
    path = config_arg(isvc)
    mount = next(m for m in predictor["model"]["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in predictor["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    return parse_model_server_config(config_map["data"][path[len(mount["mountPath"]) + 1 :]])


# -------------------------------------------------------------------------------- the schemas


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "inferenceservice-canary.yaml"])
def test_inference_services_match_kserves_schema(validator, name):
    assert errors(validator, load(name)) == []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        pytest.param(lambda d: d["spec"]["predictor"]["model"].update(storageURI="pvc://x/y"), "Additional properties",
                     id="misspelled-field"),
        pytest.param(lambda d: d["spec"]["predictor"].update(canaryTrafficPercent=150), "greater than the maximum of 100",
                     id="canary-over-100"),
        # Unquoted in YAML, 2.21 is a float: KServe would reject it, and 2.21.0 is not 2.21 anyway.
        pytest.param(lambda d: d["spec"]["predictor"]["model"].update(runtimeVersion=2.21), "is not of type 'string'",
                     id="runtime-version-as-number"),
        pytest.param(lambda d: d["metadata"].update(name="Digits"), "does not match", id="name-not-dns-1035"),
        pytest.param(lambda d: d["spec"]["predictor"].update(tensorflow={"storageUri": "pvc://x/y"}), "is valid under each of",
                     id="two-implementations"),
        pytest.param(lambda d: d["spec"]["predictor"]["model"].pop("modelFormat"), "'modelFormat' is a required property",
                     id="no-model-format"),
        pytest.param(lambda d: d.update(apiVersion="serving.kserve.io/v1alpha1"), "was expected", id="wrong-api-version"),
    ],
)
def test_the_schema_rejects_a_broken_copy(validator, stable, breakage, expected):
    broken = copy.deepcopy(stable)
    breakage(broken)

    found = errors(validator, broken)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize("name", ["inferenceservice.yaml", "inferenceservice-canary.yaml"])
def test_pod_level_fields_are_valid_kubernetes(name):
    # KServe copies the model spec's container fields into the predictor container and the
    # predictor's volumes into the pod: check them against Kubernetes' own schema.
    predictor = load(name)["spec"]["predictor"]
    model = predictor["model"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "predictor"},
        "spec": {
            "containers": [{
                "name": "kserve-container",
                "image": f"tensorflow/serving:{model['runtimeVersion']}",
                "args": model["args"],
                "volumeMounts": model["volumeMounts"],
                "resources": model["resources"],
            }],
            "volumes": predictor["volumes"],
        },
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_model_config_map_is_valid_kubernetes(config_map):
    kubernetes_validate.validate(config_map, KUBERNETES_VERSION, strict=True)


# -------------------------------------------------------------------------------- the wiring


def test_tf_serving_runtime_pinned_to_the_tensorflow_that_exports(stable, canary):
    for isvc in (stable, canary):
        model = isvc["spec"]["predictor"]["model"]
        assert model["modelFormat"]["name"] == "tensorflow"
        assert model["runtime"] == "kserve-tensorflow-serving"
        assert model["runtimeVersion"] == "2.21.0"
    # A SavedModel can use ops that an older server lacks: same major.minor as the exporting TensorFlow.
    exporting = importlib.metadata.version("tensorflow").split(".")[:2]
    assert stable["spec"]["predictor"]["model"]["runtimeVersion"].split(".")[:2] == exporting


def test_both_revisions_serve_the_shared_model_repository(stable, canary):
    claim = yaml.safe_load((ROOT / "deploy" / "k8s" / "pvc.yaml").read_text())["metadata"]["name"]
    for isvc in (stable, canary):
        # pvc://<claim>/<path>: the model's directory in the repository, <model_name>/<version>/ below it.
        assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"pvc://{claim}/{isvc['metadata']['name']}"


def test_each_revision_serves_one_pinned_version_under_the_inference_service_name(stable, canary, config_map):
    pinned = {}
    for isvc in (stable, canary):
        (model,) = served_config(isvc, config_map).model_config_list.config
        # The name clients use in /v1/models/<name>, and the directory KServe mounts.
        assert model.name == isvc["metadata"]["name"]
        assert model.base_path == MODEL_MOUNT
        assert model.model_platform == "tensorflow"
        pinned[isvc is canary] = list(model.model_version_policy.specific.versions)
    assert pinned == {False: [1], True: [2]}


def test_every_config_in_the_map_pins_exactly_one_version(config_map):
    for key, text in config_map["data"].items():
        (model,) = parse_model_server_config(text).model_config_list.config
        assert key == f"v{model.model_version_policy.specific.versions[0]}.config"
        assert len(model.model_version_policy.specific.versions) == 1


def test_the_canary_changes_only_the_version_and_the_traffic_split(stable, canary):
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    assert 0 < canary["spec"]["predictor"]["canaryTrafficPercent"] < 100
    # canaryTrafficPercent splits traffic between Knative revisions.
    for isvc in (stable, canary):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"

    def without_rollout_fields(isvc: dict) -> dict:
        doc = copy.deepcopy(isvc)
        doc["spec"]["predictor"].pop("canaryTrafficPercent", None)
        doc["spec"]["predictor"]["model"]["args"].remove(f"--model_config_file={config_arg(isvc)}")
        return doc

    assert without_rollout_fields(canary) == without_rollout_fields(stable)
