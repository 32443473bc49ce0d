# Sourced by bench/curves, bench/smoke and bench/soak: a release Herald on loopback, one fresh
# server per run, and herald-bench pointed at it. Not a command of its own.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
API_KEY="bench-api-key-$(date +%s)-$RANDOM$RANDOM"
JWT_SECRET="bench-jwt-secret-$(date +%s%N)-$RANDOM$RANDOM$RANDOM"
PORT="${HERALD_BENCH_PORT:-18390}"
BENCH="$ROOT/target/release/herald-bench"
HERALD="$ROOT/target/release/herald"
WORK="$(mktemp -d /tmp/herald-bench.XXXXXX)"
RESULTS="$WORK/results.jsonl"
SERVER_PID=""

# A process may hold only as many files as the hard limit allows; take all of it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap 'stop_server; rm -rf "$WORK"' EXIT

build() {
  cargo build --release -p herald-server -p herald-bench
}

# Starts Herald on $PORT. $1: memory|sqlite; the rest: VAR=value pairs for its environment.
# The SQLite store is $WORK/bench.db, fresh each time.
start_herald() {
  local store="$1" store_args=(--store memory)
  shift
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port $PORT is already in use: stop whatever listens there or set HERALD_BENCH_PORT" >&2
    exit 1
  fi
  rm -f "$WORK/bench.db"*
  [ "$store" = sqlite ] && store_args=()
  env HERALD_LISTEN="127.0.0.1:$PORT" HERALD_API_KEY="$API_KEY" HERALD_JWT_SECRET="$JWT_SECRET" \
    HERALD_STORE_PATH="$WORK/bench.db" RUST_LOG=warn "$@" \
    "$HERALD" serve "${store_args[@]}" >>"$WORK/herald.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "herald exited: $(tail -5 "$WORK/herald.log")" >&2; exit 1; }
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "herald did not start on port $PORT" >&2
  exit 1
}

# Runs one scenario against the running server; its report line is appended to $RESULTS.
# $1: scenario; the rest: its arguments.
bench() {
  local scenario="$1"
  shift
  echo "== $scenario $*" >&2
  "$BENCH" "$scenario" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
    --api-key "$API_KEY" --jwt-secret "$JWT_SECRET" "$@" | tee -a "$WORK/run.log" | grep '^{' >>"$RESULTS" || true
}

# One scenario on a fresh server: $1 store, $2 scenario, the rest its arguments.
fresh() {
  local store="$1"
  shift
  start_herald "$store"
  sleep 0.5
  bench "$@"
  stop_server
  sleep 2 # let TIME_WAIT sockets and the last server's memory settle
}

machine() {
  echo "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
}

commit() {
  echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo '+dirty')"
}

# gnuplot draws the plots; Debian's package without X.
need_gnuplot() {
  command -v gnuplot >/dev/null || { apt-get update && apt-get install -y gnuplot-nox; }
}

# Replaces the section of bench/RESULTS.md that starts with the heading $1 (up to the next `## `
# heading) by the contents of file $2, or appends it when there is none.
put_section() {
  local heading="$1" file="$2" out="$WORK/RESULTS.md"
  awk -v h="$heading" -v f="$file" '
    $0 == h { while ((getline line < f) > 0) print line; skip = 1; next }
    skip && /^## / { skip = 0 }
    !skip { print }
  ' bench/RESULTS.md >"$out"
  grep -qxF "$heading" bench/RESULTS.md || { echo; cat "$file"; } >>"$out"
  cp "$out" bench/RESULTS.md
}
