#!/usr/bin/env bash
# The README's two commands, run as a new user runs them (CI calls this in its fresh clone):
# the first serves the shop (its URL line, then `/`, `/_herald` and `/metrics` must answer with the
# shop's receivers in them); the second is the test suite. `--serve-only` runs the first alone.
set -euo pipefail
cd "$(dirname "$0")/.."

# The code lines of README.md's "## The two commands" section, in order.
mapfile -t commands < <(awk '
  /^## / { in_section = ($0 == "## The two commands") ; next }
  in_section && /^    [^ ]/ { sub(/^    /, ""); print }
' README.md)
if [ "${#commands[@]}" -ne 2 ]; then
  echo "error: README.md's \"The two commands\" section should show two command lines, found ${#commands[@]}: ${commands[*]}" >&2
  exit 1
fi
serve="${commands[0]}"
test="${commands[1]}"

logs="$(mktemp -d)"
echo "README command 1: $serve"
# In the checkout, as the README says (the demo's bookstore.db goes there).
setsid sh -c "$serve" > "$logs/serve.out" 2> "$logs/serve.err" &
group=$!
stop() { kill -- -"$group" 2>/dev/null || true; }
trap stop EXIT
url=""
for _ in $(seq 1 2700); do   # building from nothing takes minutes on a small machine
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$logs/serve.out" | head -1 || true)"
  [ -n "$url" ] && break
  if ! kill -0 "$group" 2>/dev/null; then
    echo "error: \`$serve\` stopped before printing its URL:" >&2
    tail -20 "$logs/serve.err" >&2
    exit 1
  fi
  sleep 1
done
[ -n "$url" ] || { echo "error: \`$serve\` printed no URL within 45 minutes" >&2; exit 1; }
check() {  # PATH TEXT...
  local path="$1"; shift
  local body
  body="$(curl -fsS "${url%/}$path")" || { echo "error: GET $path failed" >&2; exit 1; }
  for text in "$@"; do
    grep -qF -- "$text" <<<"$body" || { echo "error: GET $path lacks \`$text\`" >&2; exit 1; }
  done
  echo "  GET $path: 200, with ${*}"
}
check / "<h1>Bookstore</h1>" 'href="/_herald"'
check /_herald "<h1>Herald</h1>" "fill_slug"
check /metrics "# TYPE herald_receiver_calls_total" "fill_slug"
stop
trap - EXIT

if [ "${1:-}" = "--serve-only" ]; then
  exit 0
fi
echo "README command 2: $test"
sh -c "$test"
