"""`tfstack bench`: load generation, statistics and reports for REST, gRPC and in-process inference."""
