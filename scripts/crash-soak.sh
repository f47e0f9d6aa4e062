#!/usr/bin/env bash
# The long crash loop: SIGKILL the server 100 times (or $1) under concurrent appends,
# erasures and checkpoint signing, restarting it each time, then check that every
# acknowledged append and erasure survived and the whole ledger verifies.
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_CYCLES="${1:-100}" cargo test --release --test crash acknowledged_appends_survive_sigkill -- --nocapture
