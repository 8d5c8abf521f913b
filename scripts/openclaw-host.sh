#!/usr/bin/env bash
# Installs a Node 24 binary (npm package `node@24`; OpenClaw needs Node >= 24.16) and
# openclaw@2026.9.6 into a cache folder, once, and prints how to run them. The install is
# about 650 MB, so an existing one is reused.
#
#   scripts/openclaw-host.sh            # install (if needed) and print the paths
#   eval "$(scripts/openclaw-host.sh --env)"   # sets CLAWRL_NODE24 and CLAWRL_OPENCLAW
#
# Env: CLAWRL_OPENCLAW_CACHE (default: <repo>/.cache/openclaw-host),
#      CLAWRL_OPENCLAW_VERSION (default 2026.9.6).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${CLAWRL_OPENCLAW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clawrl-openclaw-host}"
version="${CLAWRL_OPENCLAW_VERSION:-2026.9.6}"
node24="$cache/node_modules/node/bin/node"
entry="$cache/node_modules/openclaw/openclaw.mjs"
stamp="$cache/.installed-$version"

if [[ ! -f "$stamp" || ! -x "$node24" || ! -f "$entry" ]]; then
  mkdir -p "$cache"
  # A private package.json keeps npm from walking up into the repository's own.
  [[ -f "$cache/package.json" ]] || echo '{"name":"clawrl-openclaw-host","private":true}' >"$cache/package.json"
  echo "installing node@24 and openclaw@$version into $cache (~650 MB, a few minutes)" >&2
  # Node 24 first: openclaw's install scripts refuse an older `node`, so they must find it on PATH.
  (cd "$cache" && npm install --no-audit --no-fund --loglevel=error "node@24" >&2)
  (cd "$cache" && PATH="$(dirname "$node24"):$PATH" npm install --no-audit --no-fund --loglevel=error "openclaw@$version" >&2)
  touch "$stamp"
fi

# The openclaw package's bin points at its launcher; fall back to reading package.json.
if [[ ! -f "$entry" ]]; then
  entry="$cache/node_modules/openclaw/$("$node24" -p "const b=require('$cache/node_modules/openclaw/package.json').bin; typeof b==='string'?b:b.openclaw")"
fi

if [[ "${1:-}" == "--env" ]]; then
  printf 'export CLAWRL_NODE24=%q\nexport CLAWRL_OPENCLAW=%q\n' "$node24" "$entry"
else
  cat <<EOF
node 24:  $node24 ($("$node24" --version))
openclaw: $entry
run:      "$node24" "$entry" --version
          OPENCLAW_STATE_DIR=<dir> "$node24" "$entry" agent --local --agent main --message "hi"
plugin:   OPENCLAW_STATE_DIR=<dir> "$node24" "$entry" plugins install --link "$repo" --force --accept-capabilities
EOF
fi
