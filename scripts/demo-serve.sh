#!/usr/bin/env bash
# Second half of `make demo`: serve ./models with the embedded server, query it over REST,
# gRPC and curl with the sample request that export wrote next to the latest version, then
# stop it. Ports: GRPC_PORT and REST_PORT (make demo DEMO_GRPC_PORT=9500 DEMO_REST_PORT=9501).
set -euo pipefail
: "${MODELS:?}" "${GRPC_PORT:?}" "${REST_PORT:?}" "${BIN:?}"
model=digits
wait_seconds=${WAIT_SECONDS:-120}
latest=$(ls "$MODELS/$model" | grep -E '^[0-9]+$' | sort -n | tail -1)
request="$MODELS/$model/$latest/assets.extra/sample_request.json"
rest="http://127.0.0.1:$REST_PORT"

# A port someone else holds would make our server exit after loading, and could even answer
# the readiness check in its place; say so now.
for port in "$GRPC_PORT" "$REST_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port on 127.0.0.1 is already in use (another server?); choose free ports:" >&2
    echo "  make demo DEMO_GRPC_PORT=9500 DEMO_REST_PORT=9501" >&2
    exit 1
  fi
done

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
deadline=$((SECONDS + wait_seconds))
# Short waits in a loop, so a server that died is noticed within seconds.
until "$BIN/tfstack" status "$model" --rest "$rest" --wait 3 >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then
    wait "$server" && code=0 || code=$?
    echo "the server exited (status $code) before $model became available; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "$model did not become available within ${wait_seconds}s; the server log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.2
done
"$BIN/tfstack" status "$model" --rest "$rest"
echo "== predict over REST (version $latest, request $request)"
"$BIN/tfstack" predict "$model" --rest "$rest" --input "$request"
echo "== predict over gRPC"
"$BIN/tfstack" predict "$model" --grpc "127.0.0.1:$GRPC_PORT" --input "$request"
echo "== the same over plain HTTP, as any TF Serving user would (the server is still up):"
echo "curl -s -d @$request $rest/v1/models/$model:predict"
if command -v curl >/dev/null; then
  curl -sS -d @"$request" "$rest/v1/models/$model:predict"
  echo
fi
echo "== stopping the server (keep one running with: $BIN/tfstack serve --port=$GRPC_PORT --rest_api_port=$REST_PORT --model_name=$model --model_base_path=$MODELS/$model)"
