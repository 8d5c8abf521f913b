#!/usr/bin/env bash
# How long OpenClaw takes to load the clawrl plugin when its gateway starts, as OpenClaw itself
# reports it (OPENCLAW_DIAGNOSTICS=plugin.load-profile: one line per load and phase; the gateway
# loads a plugin more than once while starting). Three variants of the same packed checkout:
#   package   `openclaw plugins install <tgz>`: the compiled dist/plugin/index.js, as users get it
#   source    the same installed copy with dist/ removed and plugin/*.ts put back, linked:
#             the TypeScript that OpenClaw compiles at each load (the state before the build)
#   own-deps  the package with only the plugin's own dependencies declared (ws, msgpackr,
#             minisearch): what a plugin package without the daemon's dependencies would cost,
#             since OpenClaw captures every declared dependency of a plugin at each load
#
#   bash bench/plugin-load.sh            # all three (each gateway start takes 1-3 minutes here)
#   bash bench/plugin-load.sh package    # one of them
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/openclaw-host.sh --env)"
variants=("$@")
((${#variants[@]})) || variants=(package source own-deps)

work="$(mktemp -d -t clawrl-plugin-load-XXXXXX)"
trap 'rm -rf "$work"' EXIT
npm pack --pack-destination "$work" --silent >/dev/null
tarball="$(ls "$work"/clawrl-*.tgz)"

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

# The installed package's folder, copied for linking (OpenClaw refuses a symlinked node_modules).
installed_copy() {
  new_state
  quiet openclaw plugins install "$tarball" --force --accept-capabilities
  copy="$work/linked-$1"
  cp -r "$state/extensions/clawrl" "$copy"
}

# Starts the gateway, waits for `[gateway] ready`, prints the clawrl plugin's load-profile lines.
measure() {
  local log="$work/gateway-$1.log" started pid
  started=$(date +%s)
  OPENCLAW_DIAGNOSTICS=plugin.load-profile openclaw gateway run >"$log" 2>&1 &
  pid=$!
  until grep -q '\[gateway\] ready' "$log"; do
    if ! kill -0 "$pid" 2>/dev/null || (($(date +%s) - started > 400)); then
      echo "$1: the gateway did not get ready; its log:" >&2
      tail -20 "$log" >&2
      kill "$pid" 2>/dev/null || true
      return 1
    fi
    sleep 1
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  local loads
  loads=$(grep -o 'phase=[a-z:-]* plugin=clawrl elapsedMs=[0-9.]*' "$log" | grep -v ':register' | sed 's/.*elapsedMs=//' | paste -sd ' ' -)
  echo "| $1 | $(grep -m1 -o 'plugin=clawrl elapsedMs=[0-9.]* source=[^ ]*' "$log" | sed 's/.*source=//; s#.*/clawrl/##; s#.*/linked-[a-z-]*/##') | ${loads// / + } ms | $(($(date +%s) - started)) s |"
}

echo "| variant | entry | clawrl load at gateway start (each load) | gateway ready after |"
echo "|---|---|---|---|"
for variant in "${variants[@]}"; do
  case "$variant" in
    package)
      new_state
      quiet openclaw plugins install "$tarball" --force --accept-capabilities ;;
    source)
      installed_copy source
      rm -rf "$copy/dist"
      cp -r plugin protocol "$copy/"
      new_state
      quiet openclaw plugins install --link "$copy" --force --accept-capabilities ;;
    own-deps)
      installed_copy own-deps
      node -e '
        const fs = require("fs"); const file = process.argv[1]; const p = JSON.parse(fs.readFileSync(file, "utf8"));
        p.dependencies = Object.fromEntries(["ws", "msgpackr", "minisearch"].map((m) => [m, p.dependencies[m]]));
        fs.writeFileSync(file, JSON.stringify(p, null, 2));' "$copy/package.json"
      new_state
      quiet openclaw plugins install --link "$copy" --force --accept-capabilities ;;
    *) echo "unknown variant $variant (package, source or own-deps)" >&2; exit 2 ;;
  esac
  quiet openclaw plugins enable clawrl
  measure "$variant"
done
