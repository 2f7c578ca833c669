"""gRPC front end: tensorflow.serving PredictionService and ModelService on grpcio asyncio."""
