"""`python -m tfstack.serving --model_base_path=...`: the same as `tfstack serve`."""

import sys

from tfstack.serving.server._server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
