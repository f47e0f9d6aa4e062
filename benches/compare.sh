#!/usr/bin/env bash
# consent-ledger next to a PostgreSQL baseline of the same logical workloads, built the way
# a team would without consent-ledger (benches/postgres/), on this machine, in one run:
#
#   durable unary appends      consent-ledger `Append`       vs  append_event() per transaction
#   durable batched appends    `AppendBatch` of $BATCH       vs  $BATCH append_event() in one transaction
#   "may we email X?"          `Check` (the full decision)   vs  indexed point read of the latest consent
#
# PostgreSQL runs with its durable defaults (fsync, synchronous_commit = on) plus the
# tuning any team would do (shared_buffers, max_wal_size); pgbench drives it with prepared
# statements. consent-ledger is driven by `consent-ledger bench`, its own gRPC client.
# Both get the same client counts, warm-up and measured period. consent-ledger alone is
# also measured on `bench ping` (health checks at the unary appends' concurrency: what any
# unary call reaches here, its transport's ceiling), `Screen` and `VerifyLedger`. Results
# (JSON and pgbench output) go to $OUT; the table and the ratios are printed at the end.
#
#   benches/compare.sh                          # 20 s per measure, 100,000 seeded contacts
#   DURATION=10 CONTACTS=20000 benches/compare.sh
#   PIN=1 benches/compare.sh                    # servers on CPU 0, load generators on CPU 1
#
# Installs PostgreSQL from Debian if it is missing (needs root), starts a private instance
# on a temporary directory and a loopback port, and stops it and removes everything at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CONTACTS=${CONTACTS:-100000}
APPEND_CLIENTS=${APPEND_CLIENTS:-64}
CHECK_CLIENTS=${CHECK_CLIENTS:-32}
BATCH=${BATCH:-500}
BATCH_CLIENTS=${BATCH_CLIENTS:-8}
APPEND_CONTACTS=${APPEND_CONTACTS:-6400}  # contacts the appends spread over (64 clients x 100)
PIN=${PIN:-0}
PGPORT=${PGPORT:-55432}
OUT=${OUT:-target/bench-results/compare-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

if [ "$PIN" = 1 ]; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
else
    SERVER_CPU=()
    LOAD_CPU=()
fi

log() { printf '\n== %s\n' "$*" >&2; }

# ---- PostgreSQL ---------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/pgbench" ]; then
    log "installing PostgreSQL from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN=$(pg_bin)

WORK=$(mktemp -d /tmp/consent-ledger-compare.XXXXXX)
chmod 755 "$WORK"
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [ -f "$WORK/pg/postmaster.pid" ] && as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mkdir "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_postgres "$PGBIN/initdb" -D "$WORK/pg" -U bench --auth=trust -E UTF8 >/dev/null
cat >>"$WORK/pg/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK/pg'
max_connections = 200
shared_buffers = 1GB
fsync = on
synchronous_commit = on
max_wal_size = 8GB
checkpoint_timeout = 30min
CONF
log "starting PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
as_postgres "${SERVER_CPU[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w start >/dev/null
PSQL=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U bench -d postgres -v ON_ERROR_STOP=1 -q)
"${PSQL[@]}" -f benches/postgres/schema.sql
log "seeding PostgreSQL with $CONTACTS contacts"
"${PSQL[@]}" -v contacts="$CONTACTS" -f benches/postgres/seed.sql
"${PSQL[@]}" -At -c "SELECT 'seeded ' || count(*) || ' events' FROM events" >&2

# pgbench NAME SCRIPT CLIENTS [-D VAR=VALUE ...]: a warm-up, then the measured run with
# every transaction's latency logged; writes $OUT/pg-NAME.txt and prints
# "tps p50_us p99_us".
pgbench_run() {
    local name=$1 script=$2 clients=$3
    shift 3
    local common=(-h 127.0.0.1 -p "$PGPORT" -U bench -n -M prepared -f "$script"
        -c "$clients" -j 2 "$@" postgres)
    "${LOAD_CPU[@]}" "$PGBIN/pgbench" "${common[@]}" -T "$WARMUP" >/dev/null 2>&1
    rm -f "$WORK"/txlog-"$name"*
    "${LOAD_CPU[@]}" "$PGBIN/pgbench" "${common[@]}" -T "$DURATION" \
        --log --log-prefix="$WORK/txlog-$name" >"$OUT/pg-$name.txt" 2>&1
    local tps
    tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$OUT/pg-$name.txt" | head -1)
    # Field 3 of pgbench's transaction log is the latency in microseconds.
    cat "$WORK"/txlog-"$name"* | awk '{print $3}' | sort -n | awk -v tps="$tps" '
        { v[NR] = $1 }
        END {
            p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]
            p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
            printf "%s %d %d\n", tps, p50, p99
        }'
}

log "PostgreSQL: durable appends, $APPEND_CLIENTS clients"
read -r PG_APPEND PG_APPEND_P50 PG_APPEND_P99 < <(pgbench_run append benches/postgres/append.sql \
    "$APPEND_CLIENTS" -D contacts="$APPEND_CONTACTS")
log "PostgreSQL: batches of $BATCH appends, $BATCH_CLIENTS clients"
read -r PG_BATCH_TPS PG_BATCH_P50 PG_BATCH_P99 < <(pgbench_run append-batch benches/postgres/append-batch.sql \
    "$BATCH_CLIENTS" -D contacts="$APPEND_CONTACTS" -D batch="$BATCH")
PG_BATCH=$(awk -v t="$PG_BATCH_TPS" -v b="$BATCH" 'BEGIN { printf "%.1f", t * b }')
log "PostgreSQL: latest-consent point reads, $CHECK_CLIENTS clients"
read -r PG_READ PG_READ_P50 PG_READ_P99 < <(pgbench_run read benches/postgres/read.sql \
    "$CHECK_CLIENTS" -D contacts="$CONTACTS")
"${PSQL[@]}" -At -c "SELECT 'PostgreSQL data: ' || pg_size_pretty(pg_database_size('postgres'))" >&2
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null

# ---- consent-ledger -----------------------------------------------------------------
log "building consent-ledger (release)"
deploy/build-deps.sh >/dev/null
cargo build --release --locked --quiet
BIN=target/release/consent-ledger
"${SERVER_CPU[@]}" "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/ledger" \
    >"$WORK/server.out" 2>"$OUT/server.log" &
SERVER_PID=$!
await_listening "$WORK/server.out"
ours() { "${LOAD_CPU[@]}" "$BIN" bench "$@" --server "$URL" --json; }
field() { json_number "$OUT/$1" "$2"; }

log "consent-ledger: the transport's ceiling, health checks at $APPEND_CLIENTS in flight"
ours ping --concurrency "$APPEND_CLIENTS" --connections 4 --warmup "$WARMUP" \
    --duration "$DURATION" >"$OUT/ours-ping.json"
log "consent-ledger: durable appends, $APPEND_CLIENTS in flight"
ours append --concurrency "$APPEND_CLIENTS" --connections 4 --warmup "$WARMUP" \
    --duration "$DURATION" >"$OUT/ours-append.json"
log "consent-ledger: AppendBatch of $BATCH, $BATCH_CLIENTS in flight"
ours append --concurrency "$BATCH_CLIENTS" --connections 2 --batch "$BATCH" \
    --warmup "$WARMUP" --duration "$DURATION" >"$OUT/ours-append-batch.json"
log "consent-ledger: seeding $CONTACTS contacts, then Check, $CHECK_CLIENTS in flight"
ours check --concurrency "$CHECK_CLIENTS" --connections 2 --contacts "$CONTACTS" \
    --contact-prefix pop --warmup "$WARMUP" --duration "$DURATION" >"$OUT/ours-check.json"
log "consent-ledger: Screen of the $CONTACTS contacts"
ours screen --contacts "$CONTACTS" --no-seed --contact-prefix pop >"$OUT/ours-screen.json"
ours screen --contacts "$CONTACTS" --no-seed --contact-prefix pop --brief >"$OUT/ours-screen-brief.json"
log "consent-ledger: VerifyLedger"
ours verify --proofs 200 >"$OUT/ours-verify.json"
du -sh "$WORK/ledger" | awk '{print "consent-ledger data: " $1}' >&2

# ---- the table ------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
OURS_APPEND=$(field ours-append.json events_per_sec)
OURS_BATCH=$(field ours-append-batch.json events_per_sec)
OURS_CHECK=$(field ours-check.json events_per_sec)
{
    echo "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/Mem:/ {print $2}') GiB; PIN=$PIN; ${DURATION} s measured after ${WARMUP} s warm-up"
    echo
    printf '| %-44s | %16s | %16s | %7s | %-15s | %-15s |\n' workload "consent-ledger/s" "PostgreSQL/s" ratio "p50 ms (ours/pg)" "p99 ms (ours/pg)"
    printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..18})" "$(printf -- '-%.0s' {1..9})" "$(printf -- '-%.0s' {1..17})" "$(printf -- '-%.0s' {1..17})"
    printf '| %-44s | %16.0f | %16.0f | %7s | %-15s | %-15s |\n' "durable unary appends, $APPEND_CLIENTS clients" \
        "$OURS_APPEND" "$PG_APPEND" "$(ratio "$OURS_APPEND" "$PG_APPEND")" \
        "$(ms "$(field ours-append.json p50_us)") / $(ms "$PG_APPEND_P50")" \
        "$(ms "$(field ours-append.json p99_us)") / $(ms "$PG_APPEND_P99")"
    printf '| %-44s | %16.0f | %16.0f | %7s | %-15s | %-15s |\n' "durable appends in batches of $BATCH, $BATCH_CLIENTS clients" \
        "$OURS_BATCH" "$PG_BATCH" "$(ratio "$OURS_BATCH" "$PG_BATCH")" \
        "$(ms "$(field ours-append-batch.json p50_us)") / $(ms "$PG_BATCH_P50")" \
        "$(ms "$(field ours-append-batch.json p99_us)") / $(ms "$PG_BATCH_P99")"
    printf '| %-44s | %16.0f | %16.0f | %7s | %-15s | %-15s |\n' "Check vs latest-consent read, $CHECK_CLIENTS clients" \
        "$OURS_CHECK" "$PG_READ" "$(ratio "$OURS_CHECK" "$PG_READ")" \
        "$(ms "$(field ours-check.json p50_us)") / $(ms "$PG_READ_P50")" \
        "$(ms "$(field ours-check.json p99_us)") / $(ms "$PG_READ_P99")"
    echo
    echo "consent-ledger only: Screen $(field ours-screen.json contacts_per_sec | xargs printf '%.0f') contacts/s" \
        "(brief: $(field ours-screen-brief.json contacts_per_sec | xargs printf '%.0f')/s);" \
        "VerifyLedger $(field ours-verify.json entries_per_sec | xargs printf '%.0f') entries/s" \
        "(raw SHA-256 of the same bytes: $(field ours-verify.json raw_sha256_entries_per_sec | xargs printf '%.0f')/s)"
    echo "the transport's ceiling: $(field ours-ping.json events_per_sec | xargs printf '%.0f') health checks/s," \
        "$APPEND_CLIENTS clients (a unary call with no work behind it; $(ratio "$(field ours-ping.json events_per_sec)" "$PG_APPEND")" \
        "PostgreSQL's unary appends)"
    echo "(units: appends and events per second; Check counts decisions, PostgreSQL point reads)"
} | tee "$OUT/table.md"
echo "results in $OUT" >&2
