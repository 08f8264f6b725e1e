#!/usr/bin/env bash
# Fault runs against the bookstore (see scripts/fault-run.py): a SIGKILL of the server under load
# on SQLite, a SIGKILL of a worker and a PostgreSQL restart under load. Ends with the counts it
# checked; exits non-zero if a check did not hold. HERALD_FAULT_POSTGRES=0 runs the SQLite one only.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p bookstore --bin bookstore
export BOOKSTORE_BIN="$target/release/bookstore"
exec python3 scripts/fault-run.py
