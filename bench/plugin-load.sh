#!/usr/bin/env bash
# How long OpenClaw takes to load the clawrl plugin when its gateway starts, as OpenClaw itself
# reports it (OPENCLAW_DIAGNOSTICS=plugin.load-profile: one line per load; the gateway loads a
# plugin more than once while starting). Two variants:
#   package  the plugin package (`npm run pack:plugin`) installed with `openclaw plugins install`:
#            one bundled file, no dependencies; what users get
#   source   the TypeScript entry linked from a package that declares (and has installed) the
#            daemon's dependencies: clawrl before it was packaged, compiled by OpenClaw at each load
#
#   bash bench/plugin-load.sh            # both (a gateway start takes 20 s to 2 minutes here)
#   bash bench/plugin-load.sh package    # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/openclaw-host.sh --env)"
variants=("$@")
((${#variants[@]})) || variants=(package source)

work="$(mktemp -d -t clawrl-plugin-load-XXXXXX)"
trap 'rm -rf "$work"' EXIT

openclaw() { OPENCLAW_STATE_DIR="$state" NO_COLOR=1 "$CLAWRL_NODE24" "$CLAWRL_OPENCLAW" "$@"; }
# A setup step's output is shown only when it fails.
quiet() { "$@" >"$work/step.log" 2>&1 || { cat "$work/step.log" >&2; return 1; }; }

# A state dir with the provider and plugin entry merged and a loopback gateway configured.
new_state() {
  state="$(mktemp -d "$work/state-XXXXXX")"
  quiet node daemon/bin.mjs --data-dir "$work/data" openclaw-config --merge "$state/openclaw.json" \
    --url http://127.0.0.1:7077 --model clawrl-embedded --primary
  node -e '
    const fs = require("fs"); const file = process.argv[1]; const c = JSON.parse(fs.readFileSync(file, "utf8"));
    c.gateway = { mode: "local", port: 20000 + Math.floor(Math.random() * 20000), bind: "loopback", auth: { mode: "token", token: "bench-" + Date.now() } };
    fs.writeFileSync(file, JSON.stringify(c, null, 2));' "$state/openclaw.json"
}

stop_gateway() {
  kill -- -"$1" 2>/dev/null || true
  while kill -0 -- -"$1" 2>/dev/null; do sleep 0.2; done
  wait "$1" 2>/dev/null || true
}

# Starts the gateway, waits for `[gateway] ready`, prints a table row of the plugin's loads.
measure() {
  local log="$work/gateway-$1.log" started pid loads entry
  started=$(date +%s)
  : >"$log"
  # In a process group of its own: the gateway runs in a child of the `openclaw` process, which
  # outlives a kill of that process alone.
  OPENCLAW_DIAGNOSTICS=plugin.load-profile OPENCLAW_STATE_DIR="$state" NO_COLOR=1 \
    setsid "$CLAWRL_NODE24" "$CLAWRL_OPENCLAW" gateway run >"$log" 2>&1 &
  pid=$!
  until grep -q '\[gateway\] ready' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null || (($(date +%s) - started > 400)); then
      echo "$1: the gateway did not get ready; its log:" >&2
      tail -20 "$log" >&2
      stop_gateway "$pid"
      return 1
    fi
    sleep 1
  done
  stop_gateway "$pid"
  loads=$(grep -o 'phase=[a-z-]* plugin=clawrl elapsedMs=[0-9.]*' "$log" | sed 's/.*elapsedMs=//' | paste -sd ' ' -)
  entry=$(grep -m1 -o 'plugin=clawrl elapsedMs=[0-9.]* source=[^ ]*' "$log" | sed 's#.*/\(plugin/[^/]*\)$#\1#')
  echo "| $1 | $entry | ${loads// / + } ms | $(($(date +%s) - started)) s |"
}

echo "| variant | entry | clawrl load at gateway start (each load) | gateway ready after |"
echo "|---|---|---|---|"
for variant in "${variants[@]}"; do
  case "$variant" in
    package)
      quiet npm run pack:plugin -- "$work"
      new_state
      quiet openclaw plugins install "$work"/clawrl-[0-9]*.tgz --force --accept-capabilities ;;
    source)
      # The daemon package with its dependencies installed, plus the plugin's TypeScript (a copy:
      # OpenClaw refuses a linked plugin whose files change meanwhile, or a symlinked node_modules).
      quiet npm pack --pack-destination "$work"
      quiet npm install -g --prefix "$work/global" --ignore-scripts --prefer-offline --no-audit --no-fund "$work"/clawrl-daemon-*.tgz
      copy="$work/linked-source"
      cp -r "$work/global/lib/node_modules/clawrl-daemon" "$copy"
      rm -rf "$copy/dist"
      cp -r plugin protocol openclaw.plugin.json "$copy/"
      new_state
      quiet openclaw plugins install --link "$copy" --force --accept-capabilities ;;
    *) echo "unknown variant $variant (package or source)" >&2; exit 2 ;;
  esac
  quiet openclaw plugins enable clawrl
  measure "$variant"
done
