"""Security flags are refused at startup when they cannot take effect (never accepted with a warning)."""

from __future__ import annotations

import pytest

from tfstack.serving._errors import StatusError
from tfstack.serving.server._flags import parse_flags
from tfstack.serving.server._server import _check_options

BASE = ["--model_base_path=/abs/m"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--use_alts_credentials"], "--use_alts_credentials is not supported by tfstack serve"),
        # TF Serving's own text for the combination (server.cc BuildAndStart).
        (["--use_alts_credentials", "--ssl_config_file=/x"],
         "Either use_alts_credentials must be false or ssl_config_file must be empty."),
        (["--rest_api_enable_ssl"], "--rest_api_enable_ssl needs --ssl_config_file"),
        (["--rest_api_max_body_bytes=0"], "--rest_api_max_body_bytes must be positive. Received: --rest_api_max_body_bytes=0"),
        (["--rest_api_header_timeout_in_ms=-1"], "--rest_api_header_timeout_in_ms must be positive"),
        (["--rest_api_max_connections=0"], "--rest_api_max_connections must be positive"),
        (["--grpc_max_connections=0"], "--grpc_max_connections must be positive"),
        (["--grpc_handshake_timeout_in_ms=0"], "--grpc_handshake_timeout_in_ms must be positive"),
    ],
)
def test_refused_combinations(flags, expected):
    with pytest.raises(StatusError) as caught:
        _check_options(parse_flags(BASE + flags).options)
    assert expected in caught.value.message


def test_new_flags_are_known_and_not_reported_as_unimplemented():
    parsed = parse_flags(BASE + ["--ssl_config_file=/x", "--rest_api_enable_ssl", "--enable_reload_config_rpc=false",
                                 "--rest_api_max_body_bytes=1000", "--rest_api_max_connections=5"])
    assert parsed.unknown == () and parsed.unimplemented == ()
    assert parsed.options.enable_reload_config_rpc is False and parsed.options.rest_api_max_body_bytes == 1000
    _check_options(parsed.options)  # a valid combination passes
