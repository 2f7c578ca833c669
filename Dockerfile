# The tfstack trainer/CLI image used by docker-compose's `trainer` service.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md tfstack_cli.py ./
COPY training ./training
COPY export ./export
COPY serving ./serving
COPY client ./client
RUN pip install --no-cache-dir '.[full]'
ENTRYPOINT ["tfstack"]
