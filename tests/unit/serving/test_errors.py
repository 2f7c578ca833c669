"""StatusError and Code: the names, numbers and HTTP statuses TF Serving uses."""

from __future__ import annotations

import pickle

import pytest

from tfstack import serving
from tfstack.serving import Code, ServerError, StatusError


def test_codes_match_the_canonical_numbering():
    assert [c.name for c in Code][:6] == ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND"]
    assert Code.FAILED_PRECONDITION == 9 and Code.UNAUTHENTICATED == 16


@pytest.mark.parametrize(
    ("code", "http"),
    [(Code.INVALID_ARGUMENT, 400), (Code.NOT_FOUND, 404), (Code.FAILED_PRECONDITION, 400),
     (Code.DEADLINE_EXCEEDED, 504), (Code.UNIMPLEMENTED, 501), (Code.UNAVAILABLE, 503), (Code.CANCELLED, 499)],
)
def test_http_status_mapping(code, http):
    assert code.http_status == http


def test_status_error_renders_like_absl_and_keeps_the_bare_message():
    err = StatusError(Code.NOT_FOUND, "Servable not found for request: Latest(m)")
    assert isinstance(err, ServerError)
    assert str(err) == "NOT_FOUND: Servable not found for request: Latest(m)"
    assert err.message == "Servable not found for request: Latest(m)"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.code, copy.message) == (err.code, err.message)


def test_status_error_rejects_ok_and_unknown_codes():
    with pytest.raises(ValueError, match="Code.OK"):
        StatusError(Code.OK, "")
    with pytest.raises(ValueError, match="Received: code=99"):
        StatusError(99, "x")


def test_public_names_and_a_cheap_import():
    import subprocess
    import sys

    assert set(serving.__all__) <= set(dir(serving))
    assert {"ServerCore", "StatusError", "Code", "ServerError", "run_server", "ServerOptions"} <= set(serving.__all__)
    # `tfstack serve --port=abc` must fail fast: importing the package does not import TensorFlow.
    probe = "import sys, tfstack.serving; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
