# Shared by the benchmark scripts (sourced, not run).

# await_listening OUT_FILE: sets URL once the server that writes OUT_FILE prints
# "listening on ADDR" (it does as soon as it serves).
await_listening() {
    for _ in $(seq 100); do
        grep -q '^listening on ' "$1" 2>/dev/null && break
        sleep 0.1
    done
    URL=http://$(sed -n 's/^listening on //p' "$1")
}

# json_number FILE NAME: the number NAME holds in a `consent-ledger bench --json` report.
json_number() { sed -n "s/^ *\"$2\": *\([0-9.]*\),*$/\1/p" "$1" | head -1; }
