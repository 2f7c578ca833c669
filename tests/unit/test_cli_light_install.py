"""`tfstack` on the light client install: commands that need the full extra say so in one line."""

from __future__ import annotations

import subprocess
import sys


def test_a_full_extra_command_on_a_light_install_says_what_to_install():
    # sys.modules[name] = None makes `import name` fail as if the package were not installed.
    code = (
        "import sys; sys.modules['sklearn'] = None; sys.argv = ['tfstack', 'train', '--no-export', '--quiet'];"
        "from tfstack import cli as tfstack_cli; tfstack_cli.main()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs 'sklearn'" in done.stderr and "pip install 'tfstack[train]' (or 'tfstack[full]' for every command)" in done.stderr
    assert "Traceback" not in done.stderr
