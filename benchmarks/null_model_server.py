"""`tfstack serve` with a zero-cost model: the ceiling of the Python request path (issue 5, Speed).

Everything runs as in the real server (flags, gRPC/REST front ends, validation, the batch
scheduler, the thread hop) except the TensorFlow call itself: each signature returns zeros of its
declared output dtypes and shapes (dim 0 = the batch). Comparing Predict on this server with its
own floor shows how close to the floor any model could get through this stack, so it separates
"the model is too slow" from "the request path is too slow".

Usage (the same flags as `tfstack serve`):
  .venv/bin/python benchmarks/null_model_server.py --port=8500 --rest_api_port=8501 \\
      --model_name=digits --model_base_path=$PWD/models/digits --enable_model_warmup=false
Used by `benchmarks/batching_throughput.py --null-model`. Never use it for anything but measuring.

With NULL_MODEL_ON_LOOP=1 (unbatched only) the zero-cost call also runs on the event loop instead
of the inference pool, which removes the thread hop: something a real model must never do (it
would block every other request), measured only to see what the hop itself costs.
"""

from __future__ import annotations

import sys

import numpy as np


def _zero_outputs(servable, feeds, fetches) -> dict[str, np.ndarray]:
    """Stands in for `Servable.run`: zeros of each fetched tensor's declared dtype and shape."""
    from tensorflow.python.framework import dtypes

    batch = int(np.shape(next(iter(feeds.values())))[0]) if feeds else 1
    infos = {info.name: info for sig in servable.signature_defs.values() for info in sig.outputs.values()}
    outputs = {}
    for name in fetches:
        info = infos[name]
        dims = [d.size for d in info.tensor_shape.dim] or [batch]
        shape = [batch if i == 0 or size < 0 else size for i, size in enumerate(dims)]
        dtype = dtypes.as_dtype(info.dtype)
        outputs[name] = np.zeros(shape, dtype=object) if dtype == dtypes.string else np.zeros(shape, dtype.as_numpy_dtype)
        if dtype == dtypes.string:
            outputs[name][...] = b"0"
    return outputs


def main(argv: list[str]) -> int:
    import os

    from tfstack.serving.server import _core, _servable
    from tfstack.serving.server._inference import run_prepared
    from tfstack.serving.server._server import main as serve

    _servable.Servable.run = _zero_outputs  # type: ignore[method-assign]
    if os.environ.get("NULL_MODEL_ON_LOOP") == "1":
        async def on_loop(self, prepared, timeout):
            return run_prepared(prepared)

        _core.DirectExecutor.run = on_loop  # type: ignore[method-assign]
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
