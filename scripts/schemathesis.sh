#!/usr/bin/env bash
# Property-based check of the HTTP door against its OpenAPI document (docs/api.md): starts a
# `kuku serve` (debug build unless KUKU_BIN says otherwise) on a temporary data directory
# and a free port, opens a funded account through the admin API, and runs schemathesis
# (a pinned version, installed into target/schemathesis-venv on first use) with a bounded
# number of examples per operation: the trading, market and history operations with an
# account's access token, the admin ones with the admin token. Fails on any undocumented
# status, any response that breaks its schema or content type, and any 5xx (the node has its
# query database and room in its rings, so none is expected).
#
# Usage: scripts/schemathesis.sh [max examples per operation, default 25]
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
EXAMPLES="${1:-25}"
KUKU_BIN="${KUKU_BIN:-target/debug/kuku}"
VENV="$PWD/target/schemathesis-venv"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "Installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
[[ -x "$KUKU_BIN" ]] || cargo build --locked -p kuku-server --bin kuku

DATA="$(mktemp -d)"
PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
ADMIN="$(printf 'ad%.0s' $(seq 32))"
export KUKU_ADMIN_TOKEN="$ADMIN"
export KUKU_GATEWAY_SECRET="$(printf '5e%.0s' $(seq 32))"
"$KUKU_BIN" serve --data-dir "$DATA" --durability none --schedule always-open --no-feed \
    --listen 127.0.0.1:0 --http-listen "127.0.0.1:$PORT" \
    >"$DATA.log" 2>&1 &
NODE=$!
stop_node() {
    kill -TERM "$NODE" 2>/dev/null || true
    wait "$NODE" 2>/dev/null || true
    rm -rf "$DATA" "$DATA.log"
}
trap stop_node EXIT

# An account with cash and shares, and its access token.
JWT="$("$VENV/bin/python" - "$PORT" "$ADMIN" <<'PY'
import json, sys, time, urllib.request
port, admin = sys.argv[1], sys.argv[2]
api = f"http://127.0.0.1:{port}/api/v1"

def call(method, path, body=None, bearer=admin):
    req = urllib.request.Request(api + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)

deadline = time.time() + 60
while True:
    try:
        account = call("POST", "/admin/accounts", {"owner": "schemathesis"})["account"]
        break
    except Exception:
        if time.time() > deadline:
            raise
        time.sleep(0.2)
call("POST", "/admin/deposits", {"account": account, "amount": 10**12, "external_ref": "st-cash"})
call("POST", "/admin/transfers-in", {"account": account, "symbol": "005930", "qty": 1000,
                                     "price": 100000, "external_ref": "st-shares"})
token = call("POST", f"/admin/accounts/{account}/token", {})["token"]
jwt = call("POST", "/auth/token", {"account": account, "token": token}, bearer="")["access_token"]
while call("GET", "/market", bearer=jwt)["phase"] != "continuous":
    if time.time() > deadline:
        raise SystemExit("the market never opened")
    time.sleep(0.1)
print(jwt)
PY
)"

# The trading, market and auth operations with the account's access token; the admin ones
# with the admin token.
run_schemathesis() {
    local bearer="$1"
    shift
    # From target/: schemathesis keeps its example cache (.schemathesis/) in the working
    # directory.
    (cd target && "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
        --url "http://127.0.0.1:$PORT" \
        --header "Authorization: Bearer $bearer" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --max-examples "$EXAMPLES" \
        --phases examples,coverage,fuzzing \
        --request-timeout 10 \
        --seed 42 \
        --no-color \
        "$@")
}
run_schemathesis "$JWT" --exclude-tag admin
run_schemathesis "$ADMIN" --include-tag admin
