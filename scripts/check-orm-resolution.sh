#!/usr/bin/env bash
# Herald beside the ORM a project already has. Only one libsqlite3-sys can be in a build, so
# herald's rusqlite is a range: this checks that the range lets Cargo resolve and build a crate
# that depends on herald (default features: SQLite) and on each of these ORMs, and that herald
# builds and passes its tests at the lowest rusqlite of the range.
#
#   bash scripts/check-orm-resolution.sh            # every ORM, then the lowest rusqlite
#   bash scripts/check-orm-resolution.sh sqlx-0.9   # one ORM (a name below), no lowest check
#   bash scripts/check-orm-resolution.sh lowest     # the lowest rusqlite only
#
# Builds go to $HERALD_ORM_TARGET_DIR (default ~/.cache/herald/orm-target), so that repeated runs
# are incremental. Fails naming each ORM that does not resolve or build.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=never
orm_target="${HERALD_ORM_TARGET_DIR:-$HOME/.cache/herald/orm-target}"

# The lowest rusqlite herald's code compiles and passes its tests with; the workspace's range
# (`rusqlite = ">=0.26, <0.44"` in Cargo.toml) starts here; 0.25 lacks `Row: AsRef<Statement>`.
lowest_rusqlite=0.26.0

# name | the ORM's dependency line
orms=(
  'sqlx-0.9|sqlx = { version = "0.9", features = ["postgres", "runtime-tokio", "chrono"] }'
  'sqlx-0.8.6|sqlx = { version = "~0.8.6", features = ["chrono"] }'
  'sea-orm-2.0|sea-orm = { version = "2.0", features = ["sqlx-postgres", "with-chrono", "runtime-tokio"] }'
  'diesel-2.3|diesel = { version = "~2.3", features = ["sqlite"] }'
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wanted="${1:-all}"
failed=()

beside() {
  local name=$1 dependency=$2
  local dir="$work/beside-$name"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "beside-${name//./-}"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
herald = { path = "$root/crates/herald" }
$dependency

[workspace]
EOF
  echo 'fn main() {}' >"$dir/src/main.rs"
  echo "== herald beside $name: $dependency"
  if ! (cd "$dir" && cargo generate-lockfile --quiet); then
    echo "error: herald and $name do not resolve together" >&2
    failed+=("$name (resolution)")
    return
  fi
  (cd "$dir" && cargo tree --quiet -i libsqlite3-sys -e normal --depth 1 2>/dev/null | head -n 3) || true
  if ! (cd "$dir" && CARGO_TARGET_DIR="$orm_target" cargo build --quiet); then
    echo "error: herald and $name resolve but do not build together" >&2
    failed+=("$name (build)")
  fi
}

for entry in "${orms[@]}"; do
  name=${entry%%|*}
  if [[ $wanted == all || $wanted == "$name" ]]; then
    beside "$name" "${entry#*|}"
  fi
done

if [[ $wanted == all || $wanted == lowest ]]; then
  # A copy of the workspace (the committed files and the working tree's changes) with its lock
  # file moved to the lowest rusqlite; the checkout itself is left as it is.
  echo "== herald at rusqlite $lowest_rusqlite"
  copy="$work/lowest"
  mkdir -p "$copy"
  git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$copy"
  if ! (cd "$copy" &&
    cargo update --quiet -p rusqlite --precise "$lowest_rusqlite" &&
    CARGO_TARGET_DIR="$orm_target" cargo test --quiet -p herald); then
    echo "error: herald does not build or pass its tests at rusqlite $lowest_rusqlite" >&2
    failed+=("rusqlite $lowest_rusqlite")
  fi
fi

if ((${#failed[@]})); then
  echo "error: failed: ${failed[*]}" >&2
  exit 1
fi
echo "ok: herald resolves and builds beside each ORM checked"
