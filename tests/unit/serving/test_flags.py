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
    assert any(line.lstrip().startswith("--xla_cpu_compilation_enabled=false") and line.endswith("(accepted, not implemented)") for line in text.splitlines())


# A typo, space-separated values and --help (issue 18, item 6). TF Serving's main.cc prints
# `unknown argument: <arg>` and starts anyway (spec §4.7); tfstack keeps that and adds the hint.


def test_a_mistyped_flag_is_ignored_as_in_tf_serving_but_the_closest_flag_is_named():
    parsed = parse_flags(["--model_nam=digits", "--rest_api_prot=8501", "model_base_path=/m"])
    assert parsed.options.model_name == "default"  # TF Serving carries on with the default
    assert parsed.unknown_lines() == [
        "unknown argument: --model_nam=digits (did you mean --model_name=digits?)",
        "unknown argument: --rest_api_prot=8501 (did you mean --rest_api_port=8501?)",
        "unknown argument: model_base_path=/m (did you mean --model_base_path=/m?)",
    ]


def test_unrelated_unknown_arguments_get_no_made_up_hint():
    parsed = parse_flags(["--no_such_flag=1", "positional"])
    assert parsed.unknown_lines() == ["unknown argument: --no_such_flag=1", "unknown argument: positional"]


def test_space_separated_values_work_like_the_equals_form():
    spaced = parse_flags(["--port", "9000", "--model_name", "digits", "--enable_batching", "false",
                          "--file_system_poll_wait_seconds", "-1", "--enable_model_warmup", "--model_base_path", "/m"])
    equals = parse_flags(["--port=9000", "--model_name=digits", "--enable_batching=false",
                          "--file_system_poll_wait_seconds=-1", "--enable_model_warmup", "--model_base_path=/m"])
    assert spaced.options == equals.options and spaced.unknown == ()


def test_a_value_flag_without_a_value_is_named():
    parsed = parse_flags(["--model_base_path", "--port=1"])
    assert parsed.unknown_lines() == ["unknown argument: --model_base_path (--model_base_path needs a value: --model_base_path=VALUE)"]
    assert parsed.options.port == 1


def test_strict_flags_exits_before_starting_on_an_unknown_argument(capsys):
    from tfstack.serving.server._server import EXIT_FAILURE, main

    assert main(["--model_nam=digits", "--model_base_path=/nonexistent", "--strict_flags"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "unknown argument: --model_nam=digits (did you mean --model_name=digits?)" in err
    assert "--strict_flags" in err


def test_help_says_what_every_flag_does_on_one_line_each():
    import dataclasses

    from tfstack.serving.server._flags import FLAG_HELP, help_text

    names = [f.name for f in dataclasses.fields(ServerOptions)]
    assert sorted(FLAG_HELP) == sorted(names), "every flag needs a line in FLAG_HELP"
    lines = help_text().splitlines()
    for name in names:
        [line] = [line for line in lines if line.lstrip().startswith(f"--{name}=")]
        assert FLAG_HELP[name] in line
    assert any("--model_name='default'" in line and "name of the single served model" in line for line in lines)
