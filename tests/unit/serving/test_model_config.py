"""ModelServerConfig parsing and TF Serving's validation texts (spec §4.1)."""

from __future__ import annotations

import pytest

from tfstack.serving import Code, StatusError
from tfstack.serving.server._model_config import parse_model_config_text, single_model_config, validate_model_config, version_policy


def _config(body: str):
    return parse_model_config_text("model_config_list { " + body + " }")


def test_good_config_and_policies():
    config = _config(
        "config { name: 'a' base_path: '/m/a' model_platform: 'tensorflow' }"
        "config { name: 'b' base_path: '/m/b' model_type: TENSORFLOW model_version_policy { all {} } }"
        "config { name: 'c' base_path: '/m/c' model_platform: 'tensorflow' "
        "  model_version_policy { specific { versions: 2 versions: 5 } } version_labels { key: 'stable' value: 2 } }"
        "config { name: 'd' base_path: '/m/d' model_platform: 'tensorflow' model_version_policy { latest { num_versions: 0 } } }"
    )
    entries = validate_model_config(config)
    assert [version_policy(e) for e in entries] == [("latest", (1,)), ("all", ()), ("specific", (2, 5)), ("latest", (1,))]
    assert dict(entries[2].version_labels) == {"stable": 2}


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("config { name: 'a' base_path: '/m' model_platform: 'tensorflow' } config { name: 'a' base_path: '/n' model_platform: 'tensorflow' }",
         "Illegal to list model a multiple times in config list"),
        ("config { name: 'a' base_path: 'rel/m' model_platform: 'tensorflow' }",
         "Expected model a to have an absolute path or URI; got base_path()=rel/m"),
        ("config { name: 'a' base_path: '/m' }",
         "Illegal setting neither ModelServerConfig::model_type (deprecated) nor ModelServerConfig::model_platform, model name is a"),
        ("config { name: 'a' base_path: '/m' model_platform: 'pytorch' }", "Model a requests unsupported platform pytorch"),
    ],
)
def test_validation_errors(body, text):
    with pytest.raises(StatusError) as info:
        validate_model_config(_config(body))
    assert info.value.code is Code.INVALID_ARGUMENT and info.value.message == text


_LOGGED = "config {{ name: 'a' base_path: '/m' model_platform: 'tensorflow' logging_config {{ {} }} }}"


@pytest.mark.parametrize(
    ("logging", "code", "text"),
    [
        # LogCollector::Create (core/log_collector.cc): no factory registered for the type.
        ("", Code.NOT_FOUND, "Cannot find LogCollector::Factory for type: "),
        ("log_collector_config { type: 'kafka' filename_prefix: '/l/a' }", Code.NOT_FOUND,
         "Cannot find LogCollector::Factory for type: kafka"),
        # logging_config.proto: "Valid range: [0, 1.0]".
        ("log_collector_config { type: 'tfrecord' filename_prefix: '/l/a' } sampling_config { sampling_rate: 1.5 }",
         Code.INVALID_ARGUMENT, "logging_config of model a: sampling_config.sampling_rate must be in [0, 1]. Received: 1.5"),
        ("log_collector_config { type: 'tfrecord' filename_prefix: 'logs/a' }", Code.INVALID_ARGUMENT,
         "logging_config of model a: log_collector_config.filename_prefix must be an absolute path ending in a file "
         "name prefix, e.g. /var/log/tfstack/a/requests. Received: 'logs/a'"),
    ],
)
def test_logging_config_tfstack_cannot_honour_is_refused(logging, code, text):
    # TF Serving's OSS server refuses every logging_config ("No request-logger-creator provided.",
    # server_request_logger.cc); tfstack registers the `tfrecord` collector and refuses the rest.
    with pytest.raises(StatusError) as info:
        validate_model_config(_config(_LOGGED.format(logging)))
    assert (info.value.code, info.value.message) == (code, text)


def test_tfrecord_logging_config_is_accepted():
    body = _LOGGED.format("log_collector_config { type: 'tfrecord' filename_prefix: '/l/a' } sampling_config { sampling_rate: 0.1 }")
    (entry,) = validate_model_config(_config(body))
    assert entry.logging_config.sampling_config.sampling_rate == pytest.approx(0.1)


def test_unparsable_file_names_the_path(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("improperly formatted file")
    from tfstack.serving.server._model_config import read_model_config_file

    with pytest.raises(StatusError) as info:
        read_model_config_file(path)
    assert info.value.message == f"Invalid protobuf file: '{path}'"


def test_single_model_config_is_what_the_flags_mean():
    (entry,) = validate_model_config(single_model_config("default", "/models/x"))
    assert (entry.name, entry.base_path, entry.model_platform) == ("default", "/models/x", "tensorflow")
