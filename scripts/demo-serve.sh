#!/usr/bin/env bash
# Second half of `make demo`: serve ./models with the embedded server, query it over REST and
# gRPC with the sample request that export wrote next to the latest version, then stop it.
set -euo pipefail
: "${MODELS:?}" "${GRPC_PORT:?}" "${REST_PORT:?}" "${BIN:?}"
model=digits
latest=$(ls "$MODELS/$model" | grep -E '^[0-9]+$' | sort -n | tail -1)
request="$MODELS/$model/$latest/assets.extra/sample_request.json"

log=$(mktemp -t tfstack-demo-serve.XXXXXX.log)
"$BIN/tfstack" serve --port="$GRPC_PORT" --rest_api_port="$REST_PORT" \
  --model_name="$model" --model_base_path="$MODELS/$model" >"$log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

echo "== waiting for $model to be AVAILABLE (server log: $log)"
if ! "$BIN/tfstack" status "$model" --rest "http://127.0.0.1:$REST_PORT" --wait 120; then
  echo "server did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "== predict over REST (version $latest, request $request)"
"$BIN/tfstack" predict "$model" --rest "http://127.0.0.1:$REST_PORT" --input "$request"
echo "== predict over gRPC"
"$BIN/tfstack" predict "$model" --grpc "127.0.0.1:$GRPC_PORT" --input "$request"
echo "== the same over plain HTTP, as any TF Serving user would:"
echo "curl -s -d @$request http://127.0.0.1:$REST_PORT/v1/models/$model:predict"
