"""Where TF Serving's own test models are (`tensorflow_serving/servables/tensorflow/testdata`).

They live next to the repository, not in it: `<repo>/../shared/tfserving-testdata` (a clean
checkout at /work/main, or a worktree next to it), else the directory named by
`TFSTACK_TFSERVING_TESTDATA`. Tests that need them fail with this message when neither exists:
they are core conformance tests, never skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "TFSTACK_TFSERVING_TESTDATA"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_NEXT_TO_REPO = _REPO_ROOT.parent / "shared" / "tfserving-testdata"


def tfserving_testdata() -> Path:
    """The testdata directory (it holds good_model_config.txt and the saved_model_* folders).

    Raises:
        FileNotFoundError: neither `<repo>/../shared/tfserving-testdata` nor $TFSTACK_TFSERVING_TESTDATA
            is such a directory.
    """
    candidates = [_NEXT_TO_REPO]
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    for candidate in candidates:
        if (candidate / "good_model_config.txt").is_file():
            return candidate.resolve()
    raise FileNotFoundError(
        f"TF Serving's testdata not found. Looked in: {', '.join(str(c) for c in candidates)}. "
        f"Expected {_NEXT_TO_REPO} (next to the repository) or a directory named by ${ENV_VAR}."
    )
