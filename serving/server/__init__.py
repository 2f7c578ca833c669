"""The TF-Serving-compatible server: model loading, the request pipeline, batching, lifecycle.

Front ends live in `rest/` (aiohttp) and `grpc/` (grpcio asyncio); both call `ServerCore`.
"""
