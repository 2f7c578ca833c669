"""Regenerate tfstack_serving_pb2.py(+.pyi) from tfstack_serving.proto.

The generated module is committed so that installing the client never needs protoc.
Generate with grpcio-tools 1.66 (bundled protoc 27.2): its gencode only requires
protobuf>=5.27.2 at run time, so the client installs next to older TensorFlow/protobuf pins.
Newer grpcio-tools work too but raise that floor to their own protobuf version.

    python -m venv /tmp/protoc-venv && /tmp/protoc-venv/bin/pip install 'grpcio-tools==1.66.*'
    /tmp/protoc-venv/bin/python client/_proto/regenerate.py
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from grpc_tools import protoc
    import grpc_tools

    here = Path(__file__).resolve().parent
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    return protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{here}",
            f"-I{well_known}",
            f"--python_out={here}",
            f"--pyi_out={here}",
            str(here / "tfstack_serving.proto"),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
