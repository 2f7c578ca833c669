"""tfstack's own compiled copy of the TF Serving wire messages (see tfstack_serving.proto)."""
