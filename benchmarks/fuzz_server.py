"""Long fuzz run against a real `tfstack serve` (issue 17): the CI-sized test is tests/integration/test_fuzz.py.

Starts the server on the half_plus_two test model, sends --rest REST and --grpc gRPC inputs from
tests/support/fuzz.py (seeded: the same seed sends the same inputs), checks the oracle on every
answer, then a correct answer, and counts tracebacks and lines in the server log.

Usage:
  .venv/bin/python benchmarks/fuzz_server.py [--rest 10000] [--grpc 5000] [--seed 17] [--json out.json]
Exit code 0 when nothing broke the oracle.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fuzz import MODEL, grpc_cases, rest_cases, run_grpc, run_rest  # noqa: E402
from tests.support.models import build_half_plus  # noqa: E402
from tests.support.server import start_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rest", type=int, default=10_000)
    parser.add_argument("--grpc", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tfstack-fuzz-"))
    build_half_plus(work / "models" / MODEL / "123")
    with start_server(work, model_name=MODEL, model_base_path=work / "models" / MODEL) as server:
        rest = run_rest(server.rest_port, rest_cases(random.Random(args.seed), args.rest))
        grpc_report = run_grpc(server.grpc_target, grpc_cases(random.Random(args.seed), args.grpc))
        after_rest = run_rest(server.rest_port, [("POST", f"/v1/models/{MODEL}:predict", b'{"instances": [1.0, 2.0, 5.0]}', {})])
        alive = server.process.poll() is None
        log = server.log_text()
    result = {
        "seed": args.seed,
        "rest": {"inputs": rest.sent, "seconds": round(rest.seconds, 1), "failures": len(rest.failures),
                 "hangs": rest.hangs, "answers": dict(rest.codes)},
        "grpc": {"inputs": grpc_report.sent, "seconds": round(grpc_report.seconds, 1),
                 "failures": len(grpc_report.failures), "hangs": grpc_report.hangs, "answers": dict(grpc_report.codes)},
        "correct_answer_after": not after_rest.failures and after_rest.codes.get("200") == 1,
        "server_alive_after": alive,
        "log_lines": len(log.splitlines()),
        "log_tracebacks": log.count("Traceback"),
    }
    print("REST:", rest.summary())
    print("gRPC:", grpc_report.summary())
    for failure in (rest.failures + grpc_report.failures)[:20]:
        print("  FAIL", failure)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    ok = not rest.failures and not grpc_report.failures and result["correct_answer_after"] and alive
    return 0 if ok and result["log_tracebacks"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
