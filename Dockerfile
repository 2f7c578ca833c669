# The tfstack trainer/CLI image used by docker-compose's `trainer` service.
FROM python:3.11-slim
WORKDIR /app
# The TensorFlow that exports must be the serving image's minor (tensorflow/serving:2.21.0 in
# docker-compose.yml and deploy/k8s); pyproject pins the same (a unit test keeps them equal).
ARG TENSORFLOW_VERSION=2.21
ARG EXTRAS=full
# Dependencies first, from the project metadata alone (empty package directories stand in for
# the source), so editing a source file does not reinstall TensorFlow: this layer stays cached
# until pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p tfstack training export client/_proto serving/server/rest serving/server/grpc serving/rollout \
        serving/testing serving/bench && touch tfstack/cli.py \
    && pip install --no-cache-dir ".[${EXTRAS}]" "tensorflow==${TENSORFLOW_VERSION}.*" \
    && pip uninstall --yes tfstack
COPY tfstack ./tfstack
COPY training ./training
COPY export ./export
COPY serving ./serving
COPY client ./client
RUN pip install --no-cache-dir --no-deps .
ENTRYPOINT ["tfstack"]
