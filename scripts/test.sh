#!/usr/bin/env bash
# The one test command: formatting and lints first (fail fast), then every test of the
# workspace (nextest if present, else cargo test), the doctests, and every benchmark built
# and run once at smoke size.
# Exit code is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Heavy tests (crash, outage, failover, many connections) open many files.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# Style and determinism, before anything slow. Clippy reads each crate's clippy.toml; the
# engine's (engine/clippy.toml) bans the clock, RandomState, threads and I/O. fuzz/ is outside
# the workspace (nightly only) and not linted here.
step "format (cargo fmt --check)"
if ! cargo fmt --all --check; then
    echo "error: the code is not formatted: run 'cargo fmt --all' and commit the result." >&2
    exit 1
fi

step "lints (cargo clippy, warnings are errors)"
if ! cargo clippy --workspace --all-targets --locked -- -D warnings; then
    echo "error: clippy found problems (above); the engine's bans are in engine/clippy.toml." >&2
    exit 1
fi

# Each proptest replays the seeds of earlier failures before any new case, from the file its
# config names: tests/proptest-regressions/<test file>.txt in its crate. A file named
# `*.proptest-regressions` is what proptest writes for a test without that config, and its
# seeds would not be where the other tests' are.
step "proptest regression seeds"
stray_seeds="$(find . -path ./target -prune -o -name '*.proptest-regressions' -print)"
if [[ -n "$stray_seeds" ]]; then
    echo "error: proptest seed files outside tests/proptest-regressions/:" >&2
    echo "$stray_seeds" >&2
    echo "Give the test FileFailurePersistence::Direct(\"tests/proptest-regressions/<file>.txt\") and move the seeds there." >&2
    exit 1
fi
find . -path ./target -prune -o -path '*/tests/proptest-regressions/*.txt' -print | sort

# The database tests use a real MariaDB/MySQL (docs/architecture.md §10): make sure one
# answers before any test runs. KUKU_MYSQL_URL names it; the default is the local server.
export KUKU_MYSQL_URL="${KUKU_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
mysql_answers() {
    # mysql://[user[:password]@]host[:port]/database
    local rest="${KUKU_MYSQL_URL#*://}" user="" password=""
    if [[ "$rest" == *@* ]]; then
        local userinfo="${rest%@*}"
        user="${userinfo%%:*}"
        [[ "$userinfo" == *:* ]] && password="${userinfo#*:}"
        rest="${rest##*@}"
    fi
    rest="${rest%%/*}"
    local host="${rest%%:*}" port=3306
    [[ "$rest" == *:* ]] && port="${rest##*:}"
    # A protocol ping when a client is installed (exit 0 once the server answers, even if
    # it refuses these credentials: the tests report those clearly);
    # otherwise, that something accepts TCP connections on the port.
    local admin=""
    for candidate in mariadb-admin mysqladmin; do
        if command -v "$candidate" >/dev/null; then
            admin="$candidate"
            break
        fi
    done
    if [[ -n "$admin" ]]; then
        MYSQL_PWD="$password" "$admin" --protocol=TCP -h "$host" -P "$port" \
            ${user:+-u "$user"} --connect-timeout=2 ping >/dev/null 2>&1
    else
        timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
    fi
}
ensure_mysql() {
    step "database for the MySQL tests: $KUKU_MYSQL_URL"
    if mysql_answers; then
        echo "MySQL answers."
        return
    fi
    if [[ "$KUKU_MYSQL_URL" =~ @(127\.0\.0\.1|localhost)(:3306)?/ && -x /usr/sbin/mariadbd ]] \
        && command -v start-stop-daemon >/dev/null; then
        echo "MariaDB is installed but not answering: starting it."
        # /run is a tmpfs: on a fresh machine the socket directory is gone.
        if [[ ! -d /run/mysqld ]] && mkdir -p /run/mysqld 2>/dev/null; then
            chown mysql:mysql /run/mysqld 2>/dev/null || true
        fi
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
        for _ in $(seq 1 60); do
            if mysql_answers; then
                echo "MariaDB answers."
                return
            fi
            sleep 1
        done
        echo "MariaDB did not answer within 60 s of starting (see its error log)." >&2
    fi
    cat >&2 <<MSG

error: no MySQL/MariaDB server answers at $KUKU_MYSQL_URL.
The database tests need a real one (they create and drop their own databases).
Either start a local MariaDB (e.g. 'start-stop-daemon --start --background --exec
/usr/sbin/mariadbd', root with an empty password, database 'test'), or point
KUKU_MYSQL_URL at a server where the user may CREATE and DROP databases, e.g.
  KUKU_MYSQL_URL=mysql://user:password@host:3306/test scripts/test.sh
MSG
    exit 1
}
ensure_mysql

# The lock-strategy tests use a real Redis (KUKU_REDIS_URL, default the local server).
export KUKU_REDIS_URL="${KUKU_REDIS_URL:-redis://127.0.0.1:6379}"
redis_answers() {
    local rest="${KUKU_REDIS_URL#*://}"
    rest="${rest##*@}"
    rest="${rest%%/*}"
    local host="${rest%%:*}" port=6379
    [[ "$rest" == *:* ]] && port="${rest##*:}"
    if command -v redis-cli >/dev/null; then
        redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG
    else
        timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
    fi
}
ensure_redis() {
    step "Redis for the lock-strategy tests: $KUKU_REDIS_URL"
    if redis_answers; then
        echo "Redis answers."
        return
    fi
    if [[ "$KUKU_REDIS_URL" =~ ://(127\.0\.0\.1|localhost)(:6379)?(/|$) ]] && command -v redis-server >/dev/null; then
        echo "Redis is installed but not answering: starting it (nothing kept on disk)."
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
        for _ in $(seq 1 30); do
            if redis_answers; then
                echo "Redis answers."
                return
            fi
            sleep 1
        done
    fi
    echo "error: no Redis answers at $KUKU_REDIS_URL (start one, or point KUKU_REDIS_URL at one)." >&2
    exit 1
}
ensure_redis

step "build (all targets)"
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
    step "tests (cargo nextest)"
    cargo nextest run --workspace --locked --no-fail-fast
else
    step "tests (cargo test; install cargo-nextest for parallel runs and test groups)"
    cargo test --workspace --locked --no-fail-fast -- --test-threads=2
fi

# The HTTP door against its own OpenAPI document, on a live node: no undocumented status, no
# response outside its schema (schemathesis, pinned, in target/schemathesis-venv).
step "HTTP API conformance (schemathesis against a live node)"
scripts/schemathesis.sh 100

step "ledger entry-point checks in a release build"
# The ledger refuses unbalanced postings and over-holds with plain code, not debug asserts:
# prove it where debug assertions are off.
cargo test --release --locked -p kuku-engine --lib ledger::balance

step "doctests"
cargo test --workspace --locked --doc

step "benchmarks build and run once (smoke size)"
cargo test --workspace --locked --benches
cargo run --locked -p kuku-bench -- http --smoke
cargo run --locked -p kuku-bench -- ws --smoke

step "all tests passed"
