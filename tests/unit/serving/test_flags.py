"""tensorflow_model_server's flag grammar: defaults, bools, unknown and malformed arguments."""

from __future__ import annotations

import pytest

from tfstack.serving.server._flags import FlagError, ServerOptions, parse_flags


def test_defaults_match_tensorflow_model_server():
    options = parse_flags([]).options
    assert (options.port, options.rest_api_port, options.model_name) == (8500, 0, "default")
    assert options.file_system_poll_wait_seconds == 1 and options.model_config_file_poll_wait_seconds == 0
    assert options.rest_api_timeout_in_ms == 30000 and options.enable_model_warmup is True
    assert (options.max_num_load_retries, options.load_retry_interval_micros) == (5, 60_000_000)
    assert options.tags == ("serve",) and options.host == "127.0.0.1"


def test_values_bools_and_later_duplicates_win():
    parsed = parse_flags(
        ["--port=9000", "--port=9001", "--model_base_path=/m", "--enable_batching", "--enable_model_warmup=false",
         "--saved_model_tags=serve,gpu", "--per_process_gpu_memory_fraction=0.5"]
    )
    o = parsed.options
    assert o.port == 9001 and o.model_base_path == "/m" and o.enable_batching is True
    assert o.enable_model_warmup is False and o.tags == ("serve", "gpu") and o.per_process_gpu_memory_fraction == 0.5
    assert "enable_batching" not in parsed.unimplemented  # implemented by tfstack.serving.server._batching


def test_unknown_arguments_are_collected_not_fatal():
    parsed = parse_flags(["--no_such_flag=1", "positional", "--port"])
    assert parsed.unknown == ("--no_such_flag=1", "positional", "--port")
    assert parsed.options == ServerOptions()


@pytest.mark.parametrize("arg", ["--port=abc", "--port=99999999999", "--enable_batching=maybe", "--rest_api_timeout_in_ms=1.5"])
def test_malformed_values_raise_with_the_received_value(arg):
    with pytest.raises(FlagError, match="Received: " + arg.replace(".", r"\.")):
        parse_flags([arg])


def test_help_lists_every_flag_and_marks_ignored_ones():
    from tfstack.serving.server._flags import help_text

    text = help_text()
    assert "--port=8500" in text and "--file_system_poll_wait_seconds=1" in text
    assert "--xla_cpu_compilation_enabled=false  (accepted, not implemented)" in text
