// clawrl as users install it, not as a linked checkout. This checkout packs as two packages: the
// daemon (`npm pack`: prepack compiles dist/), whose CLI is installed with `npm install -g`, and
// the OpenClaw plugin (`npm run pack:plugin`: one bundled file, no dependencies), installed into
// the real OpenClaw (openclaw@2026.9.6 on Node 24, scripts/openclaw-host.sh) with `openclaw
// plugins install <tgz>`, which refuses TypeScript entries. The packaged daemon serves the
// OpenClaw turn through its upstream backend, the fake vLLM, scripted to answer in text.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readRuntimeInfo, readToken } from '../daemon/config.ts';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { repoRoot, tempDir, until } from './helpers.ts';
import { Store } from '../daemon/store.ts';
import { openclawHost, type OpenclawHost } from './openclaw-host.ts';

const run = promisify(execFile);
const REPLY = 'Served by the packaged daemon.';

let host: OpenclawHost;
let fake: FakeVllm;
/** The daemon's tarball and the plugin's. */
let daemonTarball: string;
let pluginTarball: string;
/** Where `npm install -g --prefix` put the package, and its `clawrl-daemon`. */
let prefix: string;
let daemonBin: string;
const daemons: ChildProcess[] = [];

/** The packaged CLI, to completion. */
const cli = (dataDir: string, args: string[]) => run(daemonBin, ['--data-dir', dataDir, ...args], { timeout: 60_000 });

/** `clawrl-daemon start` from the package on a fresh data dir; resolves with its base URL once it wrote daemon.json. */
async function startPackagedDaemon(dataDir: string, args: string[] = []): Promise<string> {
  const child = spawn(daemonBin, ['--data-dir', dataDir, 'start', '--port', '0', '--log-level', 'warn', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemons.push(child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const info = await until(() => (child.exitCode === null ? readRuntimeInfo(dataDir) : Promise.reject(new Error(`packaged daemon exited: ${stderr}`))), 'the packaged daemon to start', 60_000);
  return `http://${info.host}:${info.port}`;
}

before(async () => {
  host = await openclawHost();
  const packDir = tempDir('clawrl-pack-');
  // npm pack prints the tarball's name last.
  const pack = async (args: string[]) => join(packDir, (await run('npm', args, { cwd: repoRoot, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 })).stdout.trim().split('\n').at(-1)!);
  daemonTarball = await pack(['pack', '--pack-destination', packDir]);
  pluginTarball = await pack(['run', 'pack:plugin', '--', packDir]);
  prefix = tempDir('clawrl-global-');
  // --ignore-scripts as the README says: lmdb's and msgpackr-extract's scripts only build from
  // source where no prebuilt binary exists (the package's allowScripts cannot cover a global install).
  await run('npm', ['install', '-g', '--prefix', prefix, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', daemonTarball], { timeout: 300_000 });
  daemonBin = join(prefix, 'bin', 'clawrl-daemon');
  fake = await startFakeVllm(() => ({ text: REPLY }), 'policy');
});

after(async () => {
  for (const child of daemons) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  await fake?.close();
});

const listing = async (tarball: string) => (await run('tar', ['tzf', tarball])).stdout.trim().split('\n').map((f) => f.replace(/^package\//, '')).sort();

test('the daemon tarball ships compiled JavaScript and its runtime assets, and no sources, tests, benches or plugin', async () => {
  const files = await listing(daemonTarball);
  for (const needed of ['package.json', 'README.md', 'daemon/bin.mjs', 'dist/daemon/cli.js', 'dist/daemon/backends/embedded/worker.js', 'dist/daemon/ui/index.html', 'dist/daemon/backends/torch/worker.py']) {
    assert.ok(files.includes(needed), `${needed} is missing from the daemon tarball`);
  }
  assert.deepEqual(files.filter((f) => /\.ts$|^(test|bench|scripts|plugin|dist\/plugin|\.cache)\//.test(f)), []);
});

test('the plugin tarball is the bundled entry, the manifest and the README, and declares no dependencies', async () => {
  assert.deepEqual(await listing(pluginTarball), ['README.md', 'openclaw.plugin.json', 'package.json', 'plugin/index.js']);
  const extracted = tempDir('clawrl-plugin-tgz-');
  await run('tar', ['xzf', pluginTarball, '-C', extracted]);
  const pkg = JSON.parse(readFileSync(join(extracted, 'package', 'package.json'), 'utf8'));
  assert.equal(pkg.name, 'clawrl');
  assert.deepEqual(pkg.openclaw.extensions, ['./plugin/index.js']);
  assert.equal(pkg.dependencies, undefined);
});

test('clawrl-daemon installed with npm install -g starts on a fresh data dir and serves its embedded model from compiled JavaScript', async () => {
  assert.ok(!existsSync(join(prefix, 'lib', 'node_modules', 'clawrl-daemon', 'node_modules', 'tsx')), 'the installed package should not carry tsx');
  const dataDir = tempDir('clawrl-pkg-embedded-');
  const url = await startPackagedDaemon(dataDir);
  const health = (await (await fetch(`${url}/healthz`)).json()) as { ok: boolean; version: string };
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  assert.deepEqual(health, { ok: true, version });

  // A completion runs the embedded model in its worker threads: the compiled worker.js, not tsx.
  const headers = { authorization: `Bearer ${readToken(dataDir)}`, 'content-type': 'application/json' };
  const models = (await (await fetch(`${url}/v1/models`, { headers })).json()) as { data: { id: string }[] };
  const reply = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify({ model: models.data[0]!.id, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }) });
  assert.equal(reply.status, 200, await reply.clone().text());
  assert.equal(((await reply.json()) as { choices: unknown[] }).choices.length, 1);

  // A large request of an opted-in session: parsed and redacted in the daemon's worker threads, from compiled JavaScript.
  const secret = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789';
  const output = `${'total 8\ndrwxr-xr-x 2 root root 4096 .\n'.repeat(9_000)}GITHUB_TOKEN is ${secret}`;
  const sessionKey = 'agent:main:package-large';
  const large = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...headers, 'x-clawrl-session-key': sessionKey, 'x-clawrl-opt-in': '1' },
    body: JSON.stringify({ model: models.data[0]!.id, messages: [{ role: 'user', content: 'what is in here?' }, { role: 'tool', content: output, tool_call_id: 'c1' }], max_tokens: 4 }),
  });
  assert.equal(large.status, 200, await large.clone().text());
  // Read from the store beside the running daemon (LMDB serves several processes).
  const store = await Store.open(dataDir);
  try {
    const [sample] = await until(async () => [...store.samplesOf(sessionKey)].length > 0 && [...store.samplesOf(sessionKey)], 'the large sample to be stored', 30_000);
    const stored = sample!.requestMessages.at(-1)!.content;
    assert.ok(stored.length > 256 * 1024 && !stored.includes(secret) && stored.endsWith('GITHUB_TOKEN is [REDACTED]'), stored.slice(-100));
  } finally {
    await store.close();
  }

  const stopped = await cli(dataDir, ['stop']);
  assert.match(stopped.stdout, /stopped clawrl daemon/);
});

test('a turn in the real OpenClaw, with the plugin installed from its tarball, is stored by the packaged daemon', { timeout: 300_000 }, async () => {
  const dataDir = tempDir('clawrl-pkg-data-');
  await startPackagedDaemon(dataDir, ['--backend', 'upstream', '--upstream-url', fake.url]);

  const stateDir = tempDir('clawrl-pkg-state-');
  const config = join(stateDir, 'openclaw.json');
  await cli(dataDir, ['openclaw-config', '--merge', config, '--primary']);
  const merged = JSON.parse(readFileSync(config, 'utf8'));
  merged.plugins.entries.clawrl.config.optInByDefault = true;
  writeFileSync(config, JSON.stringify(merged, null, 2));
  // As the README says: `plugins install` enables it too.
  await host.openclawIn(stateDir, ['plugins', 'install', pluginTarball, '--force', '--accept-capabilities']);
  const inspected = await host.openclawIn(stateDir, ['plugins', 'inspect', 'clawrl']);
  assert.match(inspected.stdout, /^Source: \S+\/extensions\/clawrl\/plugin\/index\.js$/m, 'OpenClaw should load the bundled entry of the installed copy');

  const turn = await host.openclawIn(stateDir, ['agent', '--local', '--agent', 'main', '--message', 'is the packaged plugin capturing?']);
  assert.ok(turn.stdout.includes(REPLY), turn.stdout);
  // The plugin's events and the served response, both in the opted-in session.
  const sessions = await until(async () => {
    const out = (await cli(dataDir, ['sessions', 'list', '--json'])).stdout.trim();
    return out ? out.split('\n').map((line) => JSON.parse(line) as { sessionKey: string }) : undefined;
  }, 'the session to be stored', 30_000);
  assert.equal(sessions.length, 1, JSON.stringify(sessions));
  await until(async () => {
    const shown = (await cli(dataDir, ['sessions', 'show', sessions[0]!.sessionKey])).stdout;
    return shown.includes('is the packaged plugin capturing?') && shown.includes(REPLY) && shown;
  }, 'the message and the reply in the stored session', 30_000);
});
