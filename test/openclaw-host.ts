// The real OpenClaw for integration tests (openclaw@2026.9.6 on Node 24, installed once by
// scripts/openclaw-host.sh): the plugin package as users install it, and state dirs with it
// installed and the daemon's `openclaw-config` fragment merged in.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot, runCli, tempDir } from './helpers.ts';

const run = promisify(execFile);

let built: Promise<string> | undefined;

/**
 * The plugin package (`npm run pack:plugin`'s contents, unpacked: one bundled file), built once per
 * test file. OpenClaw loads it in tens of milliseconds, where the linked TypeScript took seconds at
 * every `openclaw` command, and it is what users install.
 */
export function pluginPackage(): Promise<string> {
  built ??= (async () => {
    const dir = tempDir('clawrl-oc-plugin-');
    await run(process.execPath, [join(repoRoot, 'scripts', 'build.mjs'), '--plugin-dir', dir], { timeout: 120_000 });
    return dir;
  })();
  return built;
}

export interface StateOptions {
  /** The daemon's data dir (for its token) and URL. */
  dataDir: string;
  daemonUrl: string;
  plugin: string;
  /** More `clawrl-daemon openclaw-config` flags. */
  configArgs: string[];
  /** Changes to openclaw.json after the merge. */
  edit(config: Record<string, any>): void;
}

export type OpenclawHost = Awaited<ReturnType<typeof openclawHost>>;

/** Installs (once) and finds Node 24 and OpenClaw; returns how to run it in a state dir. */
export async function openclawHost() {
  const env = await run('bash', [join(repoRoot, 'scripts', 'openclaw-host.sh'), '--env'], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  const node24 = /CLAWRL_NODE24=(\S+)/.exec(env.stdout)![1]!.replace(/^'|'$/g, '');
  const openclaw = /CLAWRL_OPENCLAW=(\S+)/.exec(env.stdout)![1]!.replace(/^'|'$/g, '');
  const envIn = (stateDir: string, extra: NodeJS.ProcessEnv = {}) => ({ ...process.env, OPENCLAW_STATE_DIR: stateDir, NO_COLOR: '1', ...extra });
  const openclawIn = (stateDir: string, args: string[], timeout = 120_000) =>
    run(node24, [openclaw, ...args], { env: envIn(stateDir), timeout, maxBuffer: 64 * 1024 * 1024 });
  /** A long-running OpenClaw process (`gateway run`), its output piped. */
  const spawnIn = (stateDir: string, args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawn(node24, [openclaw, ...args], { env: envIn(stateDir, env), stdio: ['ignore', 'pipe', 'pipe'] });
  /** A state dir with the plugin installed and the daemon's fragment merged. */
  const state = async (opts: StateOptions): Promise<string> => {
    const stateDir = tempDir('clawrl-oc-state-');
    mkdirSync(stateDir, { recursive: true });
    const file = join(stateDir, 'openclaw.json');
    const merged = await runCli(opts.dataDir, ['openclaw-config', '--merge', file, '--url', opts.daemonUrl, ...opts.configArgs]);
    assert.equal(merged.code, 0, merged.stderr);
    const config = JSON.parse(readFileSync(file, 'utf8'));
    opts.edit(config);
    writeFileSync(file, JSON.stringify(config, null, 2));
    // `plugins install` enables the plugin; `plugins enable` after it changes nothing and takes 15 s.
    await openclawIn(stateDir, ['plugins', 'install', '--link', opts.plugin, '--force', '--accept-capabilities']);
    return stateDir;
  };
  return { openclawIn, spawnIn, state };
}
