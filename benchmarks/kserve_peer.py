"""The peer for the request-path comparison: a SavedModel behind KServe's Python ModelServer.

KServe is not a tfstack dependency. Run this file with the Python of a separate venv:

    python3.11 -m venv /work/peer/.venv
    /work/peer/.venv/bin/pip install 'kserve==0.21.*' 'tensorflow==2.21.*'
    /work/peer/.venv/bin/python benchmarks/kserve_peer.py --model-dir models/digits/1 --model-name digits --http-port 8080

It serves KServe's V1 protocol on 127.0.0.1: `POST /v1/models/<name>:predict` with TF Serving's row
body (`{"instances": [...]}`) answers `{"predictions": [...]}` (one object per row with every
output, or the bare value when the signature has one output), and `GET /v1/models/<name>` is the
empty request. `benchmarks/request_path.py` starts it next to `tfstack serve` and loads both with wrk.

The model runs the way tfstack's server runs it, so the comparison is about the serving stack:
the SavedModel's MetaGraph loaded into a `tf.compat.v1.Session` with one intra-op and one inter-op
thread, and `serving_default` called as one Session callable (feeds and fetches by tensor name).
That is faster per call than a TF2 `tf.saved_model.load` signature (see docs/performance.md). The
model is a plain synchronous `kserve.Model.predict`, which KServe calls on its event loop, as in
KServe's own examples; the per-request latency log line and the access log are off. One uvicorn
worker, no KServe gRPC server.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="A SavedModel version directory, e.g. models/digits/1.")
    parser.add_argument("--model-name", default="digits")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--signature-name", default="serving_default")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    options = _arguments(sys.argv[1:] if argv is None else argv)
    # kserve parses sys.argv at import time; give it nothing of ours.
    sys.argv = sys.argv[:1]
    import kserve
    import numpy as np
    import tensorflow as tf

    class SavedModelPredictor(kserve.Model):
        def __init__(self, name: str, model_dir: str, signature_name: str) -> None:
            super().__init__(name)
            self.model_dir = model_dir
            self.signature_name = signature_name
            self.load()

        def load(self) -> bool:
            graph = tf.Graph()
            config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
            self.session = tf.compat.v1.Session(graph=graph, config=config)
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], self.model_dir)
            signature = meta_graph.signature_def[self.signature_name]
            if len(signature.inputs) != 1:
                raise ValueError(f"This peer serves single-input signatures. Received: {sorted(signature.inputs)}")
            (info,) = signature.inputs.values()
            self.input_dtype = tf.as_dtype(info.dtype).as_numpy_dtype
            self.aliases = sorted(signature.outputs)
            fetches = [graph.get_tensor_by_name(signature.outputs[a].name) for a in self.aliases]
            self.call = self.session.make_callable(fetches, feed_list=[graph.get_tensor_by_name(info.name)])
            self.ready = True
            return True

        def predict(self, payload: dict, headers: dict | None = None) -> dict:
            batch = np.asarray(payload["instances"], dtype=self.input_dtype)
            values = [v.tolist() for v in self.call(batch)]
            values = [[x.decode() if isinstance(x, bytes) else x for x in v] if v and isinstance(v[0], bytes) else v
                      for v in values]
            if len(self.aliases) == 1:
                return {"predictions": values[0]}
            return {"predictions": [dict(zip(self.aliases, row)) for row in zip(*values)]}

    logging.getLogger("uvicorn.access").disabled = True
    model = SavedModelPredictor(options.model_name, options.model_dir, options.signature_name)
    server = kserve.ModelServer(http_port=options.http_port, workers=1, enable_grpc=False,
                                enable_latency_logging=False, enable_docs_url=False)
    server.start([model])


if __name__ == "__main__":
    main()
