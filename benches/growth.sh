#!/usr/bin/env bash
# Latency as the ledger grows: at each size in $SIZES (default 10k, 100k, 1M and 10M
# entries) the ledger is filled with seeded contacts (5 to 30 entries each, as `bench
# check` seeds them) up to that size, then measured: `Check` at 32 in flight over the
# contacts seeded last, and one durable `Append` at a time (the fsync-bound latency, and
# the path that reads the contact's state and writes Merkle nodes). The claim it tests:
# the cost per operation stays flat as the ledger grows. Each size is measured once the
# storage engine has worked off the compaction the fill left behind (its /metrics report
# no pending compaction bytes and no compaction running; at most $SETTLE seconds), so
# the figures describe a ledger of that size, not the bulk load that made it. "block
# cache" and "state cache" are the two caches' content after the check
# (`storage_block_cache_bytes`, `state_cache_bytes`), and "state hits" the share of the
# check's state lookups (its warm-up included) found in the state cache.
#
#   benches/growth.sh                               # about 6 minutes, 2.3 GB of disk at 10M
#   SIZES="10000 100000 1000000" DURATION=5 benches/growth.sh
#   GROWTH_DIR=/mnt/fast benches/growth.sh          # where the ledger lives (default /tmp)
#   SERVE_ARGS="--block-cache-mib 256" benches/growth.sh   # a cache smaller than the states checked
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

SIZES=${SIZES:-"10000 100000 1000000 10000000"}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SERVE_ARGS=${SERVE_ARGS:-}
SETTLE=${SETTLE:-900}
METRICS_PORT=${METRICS_PORT:-55490}
OUT=${OUT:-target/bench-results/growth-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

deploy/build-deps.sh >/dev/null
cargo build --release --locked --quiet
BIN=$PWD/target/release/consent-ledger
WORK=$(mktemp -d "${GROWTH_DIR:-/tmp}/consent-ledger-growth.XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # SERVE_ARGS holds several flags
"$BIN" serve --listen 127.0.0.1:0 --metrics-listen "127.0.0.1:$METRICS_PORT" --data-dir "$WORK/ledger" \
    $SERVE_ARGS >"$WORK/server.out" 2>"$OUT/server.log" &
SERVER_PID=$!
await_listening "$WORK/server.out"
tree_size() { "$BIN" ledger tree-head --server "$URL" | sed -n 's/^ *"treeSize": *"\([0-9]*\)".*$/\1/p'; }
# metric NAME: its value in the server's /metrics (bash's /dev/tcp: no HTTP client needed).
metric() {
    exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    sed -n "s/^consent_ledger_$1 \([0-9]*\).*$/\1/p" <&3
    exec 3<&-
}
# settle: waits until the storage engine has no compaction pending or running.
settle() {
    local waited=0
    while [ "$waited" -lt "$SETTLE" ]; do
        if [ "$(metric storage_pending_compaction_bytes)" = 0 ] && [ "$(metric storage_running_compactions)" = 0 ]; then
            echo "== settled after ${waited}s" >&2
            return
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "== compaction still pending after ${SETTLE}s: measuring anyway" >&2
}

printf '| %12s | %12s | %11s | %11s | %10s | %12s | %12s | %13s | %13s |\n' entries "data on disk" "block cache" "state cache" "state hits" "Check p50 ms" "Check p99 ms" "Append p50 ms" "Append p99 ms" | tee "$OUT/table.md"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------- -------------- ------------- ------------- ------------ -------------- -------------- --------------- --------------- | tee -a "$OUT/table.md"
mib() { awk -v b="$1" 'BEGIN { printf "%.1fM", b / 1048576 }'; }
step=0
for size in $SIZES; do
    step=$((step + 1))
    have=$(tree_size)
    # 17.4 entries per seeded contact on average.
    contacts=$(( (size - have) * 10 / 174 ))
    [ "$contacts" -lt 1 ] && contacts=1
    echo "== filling to about $size entries: $contacts contacts" >&2
    # No erasures while growing: each one flushes and compacts, about a second apiece at
    # 10M entries, which would dominate the fill (see README, Benchmarks).
    "$BIN" bench seed --server "$URL" --contacts "$contacts" --contact-prefix "grow$step" \
        --erase-every 0 >&2
    settle
    # The states checked are read once before measuring (one brief screen of them), as a
    # server in service has read them: otherwise at 10M entries, where the check asks
    # about 516,000 contacts, most of the measured reads would be each state's first read
    # since the fill, and the figure would describe a cold block cache, not the ledger.
    "$BIN" bench screen --server "$URL" --contacts "$contacts" --contact-prefix "grow$step" --no-seed \
        --brief >/dev/null
    # And checked for long enough that most have been asked about once (three checks per
    # contact at about 120,000 a second), as they would have been in service, so the
    # measured checks find them in the state cache and not, for the first time, in the
    # storage engine.
    "$BIN" bench check --server "$URL" --contacts "$contacts" --contact-prefix "grow$step" --no-seed \
        --concurrency 32 --connections 2 --warmup 0 --duration $((contacts * 3 / 120000 + 1)) >/dev/null
    hits=$(metric state_cache_hits_total)
    misses=$(metric state_cache_misses_total)
    "$BIN" bench check --server "$URL" --contacts "$contacts" --contact-prefix "grow$step" --no-seed \
        --concurrency 32 --connections 2 --warmup "$WARMUP" --duration "$DURATION" --json \
        >"$OUT/check-$size.json"
    entries=$(tree_size)
    hit_share=$(awk -v h="$(( $(metric state_cache_hits_total) - hits ))" -v m="$(( $(metric state_cache_misses_total) - misses ))" \
        'BEGIN { printf "%.1f%%", 100 * h / (h + m) }')
    block_cache=$(mib "$(metric storage_block_cache_bytes)")
    state_cache=$(mib "$(metric state_cache_bytes)")
    "$BIN" bench append --server "$URL" --concurrency 1 --connections 1 \
        --warmup "$WARMUP" --duration "$DURATION" --json >"$OUT/append-$size.json"
    disk=$(du -sh "$WORK/ledger" | awk '{print $1}')
    ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }
    printf '| %12s | %12s | %11s | %11s | %10s | %12s | %12s | %13s | %13s |\n' "$entries" "$disk" "$block_cache" "$state_cache" "$hit_share" \
        "$(ms "$(json_number "$OUT/check-$size.json" p50_us)")" "$(ms "$(json_number "$OUT/check-$size.json" p99_us)")" \
        "$(ms "$(json_number "$OUT/append-$size.json" p50_us)")" "$(ms "$(json_number "$OUT/append-$size.json" p99_us)")" \
        | tee -a "$OUT/table.md"
done
echo "results in $OUT" >&2
