"""Seeded fuzzing of the shared server (tests/support/fuzz.py): 2,000+ REST and 1,000+ gRPC inputs,
including huge integer literals, rank > 64 tensors and undecodable messages.

Done when: 0 crashes, 0 hangs, no 5xx / INTERNAL / UNKNOWN for a client's mistake (undecodable
gRPC bytes excepted: INTERNAL, as C++ gRPC servers answer them, grpcpp/impl/proto_utils.h),
no Python internals in any error text or traceback in the log, and correct answers afterwards.
The long run (10,000+ inputs) is benchmarks/fuzz_server.py.
"""

from __future__ import annotations

import random

import pytest

from tests.integration.test_rest import http
from tests.support.fuzz import grpc_cases, rest_cases, run_grpc, run_rest

pytestmark = pytest.mark.slow

SEED = 17


def test_fuzzing_finds_no_server_error_crash_or_hang(server):
    log_lines_before = len(server.log_text().splitlines())
    rest = run_rest(server.rest_port, rest_cases(random.Random(SEED), 2000))
    grpc_report = run_grpc(server.grpc_target, grpc_cases(random.Random(SEED), 1000))
    assert rest.sent >= 2000 and grpc_report.sent >= 1000
    assert not rest.failures, f"{rest.summary()}\n" + "\n".join(rest.failures[:20])
    assert not grpc_report.failures, f"{grpc_report.summary()}\n" + "\n".join(grpc_report.failures[:20])
    assert rest.hangs == grpc_report.hangs == 0
    # Both protocols really exercised their error paths, not just one answer.
    assert rest.codes["400"] > 1000 and rest.codes["200"] > 50, rest.summary()
    assert grpc_report.codes["INVALID_ARGUMENT"] > 200 and grpc_report.codes["INTERNAL (undecodable)"] > 20, grpc_report.summary()

    # Still serving correctly, nothing crashed, and client mistakes left no tracebacks behind
    # (at most one log line per rejected request).
    assert server.process.poll() is None
    print(rest.summary(), grpc_report.summary(), sep="\n")
    assert http(server.rest_port, "POST", "/v1/models/half_plus_two:predict", b'{"instances": [2.0]}').json() == {
        "predictions": [3.0]
    }
    new_log = server.log_text().splitlines()[log_lines_before:]
    assert not [line for line in new_log if "Traceback" in line or " E " in line[:40]], new_log[:20]
    assert len(new_log) <= rest.sent + grpc_report.sent
