#!/usr/bin/env bash
# The one test command: every test of the workspace (nextest if present, else cargo test),
# the doctests, and every benchmark built and run once at smoke size.
# Exit code is non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Heavy tests (crash, outage, failover, many connections) open many files.
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# The database tests use a real MariaDB/MySQL (DESIGN.md §8): make sure one answers before
# any test runs. KUKU_MYSQL_URL names it; the default is the local server.
export KUKU_MYSQL_URL="${KUKU_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
mysql_answers() {
    # host:port of mysql://[user[:password]@]host[:port]/database
    local rest="${KUKU_MYSQL_URL#*://}"
    rest="${rest##*@}"
    rest="${rest%%/*}"
    local host="${rest%%:*}" port=3306
    [[ "$rest" == *:* ]] && port="${rest##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
ensure_mysql() {
    step "database for the MySQL tests: $KUKU_MYSQL_URL"
    if mysql_answers; then
        echo "MySQL answers."
        return
    fi
    if [[ "$KUKU_MYSQL_URL" == *"@127.0.0.1:3306/"* && -x /usr/sbin/mariadbd ]] \
        && command -v start-stop-daemon >/dev/null; then
        echo "MariaDB is installed but not answering: starting it."
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
        for _ in $(seq 1 60); do
            if mysql_answers; then
                echo "MariaDB answers."
                return
            fi
            sleep 1
        done
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

step "build (all targets)"
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
    step "tests (cargo nextest)"
    cargo nextest run --workspace --locked --no-fail-fast
else
    step "tests (cargo test; install cargo-nextest for parallel runs and test groups)"
    cargo test --workspace --locked --no-fail-fast -- --test-threads=2
fi

step "doctests"
cargo test --workspace --locked --doc

step "benchmarks build and run once (smoke size)"
cargo test --workspace --locked --benches

step "all tests passed"
