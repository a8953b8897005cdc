#!/usr/bin/env bash
# Instructions per GET /token, tokend vs the bare node:http server, counted by
# valgrind's callgrind: unlike req/s on a shared machine, the same count twice.
# After a warm-up, the counters are zeroed, a fixed number of requests is sent
# (autocannon, concurrency 50), and the user-space instructions of the whole
# process (every thread) are divided by the requests.
# With BURSTS=k (and GAP=seconds, default 5), the requests come in k bursts
# with idle gaps between them, as a daemon's clients send them: what V8 does
# while the process idles (the memory reducer) is counted too.
#   usage: [BURSTS=k GAP=s] bench/instructions.sh [requests=20000] [warm-up=10000]   (needs valgrind)
set -euo pipefail
N=${1:-20000}
WARM=${2:-10000}
BURSTS=${BURSTS:-1}
GAP=${GAP:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
AC="$ROOT/node_modules/autocannon/autocannon.js"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 2; }

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }

# count NAME PORT CMD... : prints instructions per request
count() {
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p" "$@" >"$WORK/$name.log" 2>&1 &
  local vpid=$!
  until curl -sf "http://127.0.0.1:$port/token" >/dev/null; do sleep 0.5; done
  node "$AC" -t 60 -a "$WARM" -c 50 "http://127.0.0.1:$port/token" >/dev/null 2>&1
  callgrind_control -z "$vpid" >/dev/null 2>&1
  for ((b = 0; b < BURSTS; b++)); do
    ((b == 0)) || sleep "$GAP"
    node "$AC" -t 60 -a "$((N / BURSTS))" -c 50 "http://127.0.0.1:$port/token" >/dev/null 2>&1
  done
  callgrind_control -d "$vpid" >/dev/null 2>&1
  kill -TERM "$vpid"; wait "$vpid" 2>/dev/null || true
  local ir; ir=$(awk '/^(summary|totals):/{print $2; exit}' "$WORK"/"$name".*.1)
  echo $((ir / N))
}

STATE="$WORK/tokens.json"
node -e "const n=Date.now();require('fs').writeFileSync('$STATE',JSON.stringify({access_token:'a'.repeat(40),refresh_token:'r'.repeat(40),token_type:'Bearer',expires_at:new Date(n+6*3600e3).toISOString(),obtained_at:new Date(n).toISOString(),provider:'monzo'}),{mode:0o600})"
TPORT=$(free_port)
export TOKEND_STATE_FILE=$STATE TOKEND_TOKEN_URL=http://127.0.0.1:9/token TOKEND_CLIENT_ID=bench TOKEND_CLIENT_SECRET=bench TOKEND_LISTEN=127.0.0.1:$TPORT TOKEND_LOG_LEVEL=warn
T=$(count tokend "$TPORT" ${NODE:-node} "$ROOT/dist/cli/main.js" serve)
BODY=$(node -e "const n=Date.now();console.log(JSON.stringify({access_token:'a'.repeat(40),token_type:'Bearer',expires_at:new Date(n+6*3600e3).toISOString(),expires_in:21600}))")
BPORT=$(free_port)
B=$(BARE_BODY=$BODY count bare "$BPORT" ${NODE:-node} "$ROOT/bench/bare-server.mjs" "$BPORT")
echo "instructions per GET /token ($N requests after $WARM, concurrency 50, in $BURSTS burst(s) $GAP s apart): tokend $T, bare $B, ratio $(node -p "($T/$B).toFixed(3)")"
