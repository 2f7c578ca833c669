"""`--ssl_config_file` parsing: TF Serving's SSLConfig (PEM texts inline), checked before anything listens."""

from __future__ import annotations

import pytest

from tfstack.serving._errors import Code, StatusError
from tfstack.serving.server._tls import parse_ssl_config, read_ssl_config, rest_ssl_context
from tests.support.tls import make_pki


@pytest.fixture(scope="module")
def pki():
    return make_pki()


def test_a_good_config_loads_with_its_client_rule(pki):
    config = parse_ssl_config(pki.ssl_config_text(client_verify=True), path="ssl.config")
    assert config.client_verify and config.custom_ca == pki.ca_cert
    assert "PRIVATE" not in repr(config)  # the key never shows up in logs
    assert rest_ssl_context(config).verify_mode.name == "CERT_REQUIRED"


@pytest.mark.parametrize(
    "make_text, expected",
    [
        (lambda p: p.ssl_config_text(key=""), "server_key is empty"),
        (lambda p: p.ssl_config_text(cert=""), "server_cert is empty"),
        (lambda p: p.ssl_config_text(key="not a key"), "server_key is not a PEM private key. Received: 'not a key'"),
        (lambda p: p.ssl_config_text(cert=p.server_key), "server_cert is not a PEM certificate"),
        (lambda p: p.ssl_config_text(key=p.client_key), "server_key does not match server_cert."),
        (lambda p: p.ssl_config_text().replace("custom_ca", "custom_ca_typo"), "Invalid protobuf file: 'ssl.config'"),
        (lambda p: f'server_key: "{p.server_key[:60]}"'.replace("\n", "\\n") + f"\nserver_cert: {p.ssl_config_text().split('server_cert: ')[1].split(chr(10))[0]}",
         "does not load"),
        (lambda p: p.ssl_config_text(client_verify=True).replace("custom_ca", "#custom_ca"), "client_verify is true but custom_ca is empty"),
    ],
)
def test_a_bad_config_is_one_line_saying_what_is_wrong(pki, make_text, expected):
    with pytest.raises(StatusError) as caught:
        parse_ssl_config(make_text(pki), path="ssl.config")
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_a_file_name_where_pem_text_belongs_is_named_as_such(pki, tmp_path):
    key = tmp_path / "server.key"
    key.write_text(pki.server_key)
    with pytest.raises(StatusError, match="not a path"):
        parse_ssl_config(pki.ssl_config_text(key=str(key)), path="ssl.config")


def test_a_missing_file_is_reported_like_an_unparsable_one(tmp_path):
    with pytest.raises(StatusError, match="Invalid protobuf file: '.*missing.config'"):
        read_ssl_config(tmp_path / "missing.config")
