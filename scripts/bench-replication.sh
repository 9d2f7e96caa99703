#!/usr/bin/env bash
# Replication benchmark (docs/benchmarks.md section 6):
#  1. `kuku-bench tcp` order-to-ack latency against a primary with replication none, async and
#     sync (a hot standby on the same machine), back to back, ROUNDS times interleaved;
#  2. the time from `kuku promote` to the first order acknowledged by the new primary, in
#     async mode (promotion alone) and in sync mode (promotion + the old primary rejoining as
#     the standby the new primary needs before it can acknowledge);
#  3. heartbeat detection: SIGSTOP the primary; the standby's `primary_lost_at_ms` minus the
#     stop time.
# Every run is bounded (DURATION each, timeouts on every wait). Usage:
#   scripts/bench-replication.sh [OUT_DIR]     (env: RATE, DURATION, ROUNDS, BIN)
set -euo pipefail

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
RATE=${RATE:-10000}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
OUT=${1:-$(mktemp -d -t kuku-repl-bench.XXXX)}
mkdir -p "$OUT"
SECRET=$(printf '5e%.0s' {1..32})
ADMIN=$(printf 'ad%.0s' {1..32})
export KUKU_GATEWAY_SECRET=$SECRET KUKU_ADMIN_TOKEN=$ADMIN
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

now_ms() { date +%s%3N; }

# serve NAME GW_PORT REPL_PORT MODE [STANDBY_OF]
serve() {
  local name=$1 gw=$2 repl=$3 mode=$4 of=${5:-}
  local args=(serve --data-dir "$OUT/$name" --durability none --schedule always-open --no-feed
              --database-url none --listen "127.0.0.1:$gw" --no-http)
  if [ "$mode" != none ]; then
    args+=(--replication "$mode" --replication-listen "127.0.0.1:$repl")
    [ -n "$of" ] && args+=(--standby-of "127.0.0.1:$of")
  fi
  KUKU_LOG=warn "$BIN/kuku" "${args[@]}" >/dev/null 2>>"$OUT/$name.log" &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

wait_gateway() { # PORT
  for _ in $(seq 1 300); do
    "$BIN/kuku" admin --addr "127.0.0.1:$1" issue-token 1 >/dev/null 2>&1 && return 0
    "$BIN/kuku" admin --addr "127.0.0.1:$1" balance 1 >/dev/null 2>&1 && return 0
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && { sleep 0.5; return 0; }
    sleep 0.1
  done
  echo "gateway on $1 never came up" >&2; return 1
}

wait_role() { # REPL_PORT ROLE
  for _ in $(seq 1 300); do
    "$BIN/kuku" replication-status --node "127.0.0.1:$1" 2>/dev/null | grep -q "\"role\":\"$2\"" && return 0
    sleep 0.1
  done
  echo "node on $1 never became $2" >&2; return 1
}

stop_all() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do timeout 30 tail --pid="$p" -f /dev/null || kill -9 "$p" 2>/dev/null || true; done
  PIDS=(); }

echo "# $(date -u +%FT%TZ) rate=$RATE duration=$DURATION rounds=$ROUNDS load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mode,round,achieved_per_s,errors,p50_us,p99_us,p999_us,max_us"
for round in $(seq 1 "$ROUNDS"); do
  [ -n "${SKIP_TCP:-}" ] && break
  for mode in none async sync; do
    rm -rf "$OUT/p" "$OUT/s"
    serve p 7881 7901 "$mode"
    if [ "$mode" != none ]; then wait_role 7901 primary; serve s 7882 7902 "$mode" 7901; wait_role 7902 standby; fi
    wait_gateway 7881
    timeout 120 "$BIN/kuku-bench" tcp --addr 127.0.0.1:7881 --admin-token "$ADMIN" \
      --connections 8 --rate "$RATE" --duration "$DURATION" --warmup 1s \
      --json --out-dir "$OUT/tcp-$mode-$round" > "$OUT/tcp-$mode-$round.out" 2>&1 || true
    tail -1 "$OUT/tcp-$mode-$round.out" | python3 -c "
import json,sys
try:
    s=json.loads(sys.stdin.read()); k=s.get('kuku',s)
    g=lambda *n: next((k[x] for x in n if x in k), '?')
    print('$mode,$round,%s,%s,%s,%s,%s,%s' % (g('achieved_per_s','achieved_rate'), g('errors','errors_total'), g('p50_us','latency_us_p50'), g('p99_us','latency_us_p99'), g('p999_us','latency_us_p999'), g('max_us','latency_us_max')))
except Exception as e:
    print('$mode,$round,parse-error:', e)
"
    stop_all
  done
done

# Promotion to first ack. MODE async: promotion alone; sync: + the old primary rejoining.
token_of() { "$BIN/kuku" admin --addr "127.0.0.1:$1" issue-token "$2"; }
for mode in async sync; do
  for round in $(seq 1 "$ROUNDS"); do
    rm -rf "$OUT/p" "$OUT/s"
    serve p 7881 7901 "$mode"; P=$LAST_PID; wait_role 7901 primary
    serve s 7882 7902 "$mode" 7901; wait_role 7902 standby
    wait_gateway 7881
    "$BIN/kuku" admin --addr 127.0.0.1:7881 open-account bench-trader >/dev/null
    "$BIN/kuku" admin --addr 127.0.0.1:7881 deposit 1 100000000 >/dev/null
    TOKEN=$(token_of 7881 1)
    for _ in $(seq 1 100); do
      "$BIN/kuku" client --addr 127.0.0.1:7881 --account 1 --token "$TOKEN" buy 005930 1 --price 110000 2>/dev/null | grep -q accepted && break
      sleep 0.1
    done
    # The CLI's own cost of one order (process start, connect, login, order, ack).
    t0=$(now_ms); "$BIN/kuku" client --addr 127.0.0.1:7881 --account 1 --token "$TOKEN" buy 005930 1 --price 110000 >/dev/null; cli_ms=$(( $(now_ms) - t0 ))
    sleep 0.5
    kill -9 "$P"; wait "$P" 2>/dev/null || true
    t0=$(now_ms)
    "$BIN/kuku" promote --node 127.0.0.1:7902 --admin-token "$ADMIN" >/dev/null
    t_promoted=$(now_ms)
    if [ "$mode" = sync ]; then serve p 7881 7901 "$mode" 7902; fi
    for _ in $(seq 1 600); do
      "$BIN/kuku" client --addr 127.0.0.1:7882 --account 1 --token "$TOKEN" buy 005930 1 --price 110000 2>/dev/null | grep -q accepted && break
      sleep 0.01
    done
    t1=$(now_ms)
    echo "promote-to-first-ack,$mode,$round,promote_ms=$((t_promoted - t0)),first_ack_ms=$((t1 - t0)),cli_order_ms=$cli_ms"
    stop_all
  done
done

# Heartbeat detection (heartbeat_interval 200 ms, heartbeat_timeout 1000 ms: the defaults).
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$OUT/p" "$OUT/s"
  serve p 7881 7901 sync; P=$LAST_PID; wait_role 7901 primary
  serve s 7882 7902 sync 7901; wait_role 7902 standby
  sleep 1
  t0=$(now_ms); kill -STOP "$P"
  lost=0
  for _ in $(seq 1 100); do
    lost=$("$BIN/kuku" replication-status --node 127.0.0.1:7902 | python3 -c 'import json,sys; print(json.load(sys.stdin)["primary_lost_at_ms"])')
    [ "$lost" != 0 ] && break
    sleep 0.05
  done
  kill -CONT "$P"
  echo "heartbeat-detection,$round,detected_after_ms=$((lost - t0))"
  stop_all
done
