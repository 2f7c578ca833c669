# The tfstack trainer/CLI image used by docker-compose's `trainer` service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md tfstack/cli.py ./
COPY training ./training
COPY export ./export
COPY serving ./serving
COPY client ./client
# The TensorFlow that exports must be the serving image's minor (tensorflow/serving:2.21.0 in
# docker-compose.yml and deploy/k8s); pyproject pins the same (a unit test keeps them equal).
ARG TENSORFLOW_VERSION=2.21
RUN pip install --no-cache-dir '.[full]' "tensorflow==${TENSORFLOW_VERSION}.*"
ENTRYPOINT ["tfstack"]
