// The whole capture path in the real OpenClaw (openclaw@2026.9.6 on Node 24, installed by
// scripts/openclaw-host.sh): the plugin installed with `plugins install --link`, a real daemon
// serving through its upstream backend, and `openclaw agent --local` turns whose model calls go
// to the daemon. The upstream is the fake vLLM, scripted as a model that first calls `exec`
// with a command that exits 2, then answers in text once the tool result is in its context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { repoRoot, runCli, spawnDaemon, tempDir, type DaemonProcess } from './helpers.ts';

const run = promisify(execFile);
let node24 = '';
let openclaw = '';
let fake: FakeVllm;
let daemon: DaemonProcess;
const dataDir = tempDir('clawrl-oc-data-');

/** A stable copy of the plugin: OpenClaw copies a linked plugin and refuses one that changes meanwhile. */
function pluginCopy(): string {
  const dir = tempDir('clawrl-oc-plugin-');
  for (const part of ['plugin', 'protocol', 'openclaw.plugin.json']) cpSync(join(repoRoot, part), join(dir, part), { recursive: true });
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const runtime = { ws: pkg.dependencies.ws, msgpackr: pkg.dependencies.msgpackr };
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, type: 'module', openclaw: pkg.openclaw, dependencies: runtime }, null, 2));
  for (const mod of ['ws', 'msgpackr']) cpSync(join(repoRoot, 'node_modules', mod), join(dir, 'node_modules', mod), { recursive: true });
  return dir;
}

async function openclawIn(stateDir: string, args: string[], timeout = 120_000) {
  return run(node24, [openclaw, ...args], { env: { ...process.env, OPENCLAW_STATE_DIR: stateDir, NO_COLOR: '1' }, timeout, maxBuffer: 64 * 1024 * 1024 });
}

/** A state dir with the plugin installed and the daemon's provider configured. */
async function openclawState(optInByDefault: boolean, plugin: string): Promise<string> {
  const stateDir = tempDir('clawrl-oc-state-');
  mkdirSync(stateDir, { recursive: true });
  const file = join(stateDir, 'openclaw.json');
  const merged = await runCli(dataDir, ['openclaw-config', '--merge', file, '--url', daemon.url, '--primary']);
  assert.equal(merged.code, 0, merged.stderr);
  const config = JSON.parse(readFileSync(file, 'utf8'));
  config.plugins.entries.clawrl.config.optInByDefault = optInByDefault;
  writeFileSync(file, JSON.stringify(config, null, 2));
  await openclawIn(stateDir, ['plugins', 'install', '--link', plugin, '--force', '--accept-capabilities']);
  await openclawIn(stateDir, ['plugins', 'enable', 'clawrl']);
  return stateDir;
}

before(async () => {
  const env = await run('bash', [join(repoRoot, 'scripts', 'openclaw-host.sh'), '--env'], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 });
  node24 = /CLAWRL_NODE24=(\S+)/.exec(env.stdout)![1]!.replace(/^'|'$/g, '');
  openclaw = /CLAWRL_OPENCLAW=(\S+)/.exec(env.stdout)![1]!.replace(/^'|'$/g, '');
  fake = await startFakeVllm((body) => {
    const messages = body.messages as { role: string }[];
    return messages.some((m) => m.role === 'tool')
      ? { text: 'That directory does not exist.' }
      : { toolCalls: [{ id: `call_exec_${Math.random().toString(36).slice(2, 10)}`, name: 'exec', arguments: JSON.stringify({ command: 'ls /definitely-not-here' }) }] };
  }, 'policy');
  daemon = await spawnDaemon(dataDir, ['--backend', 'upstream', '--upstream-url', fake.url]);
});

after(async () => {
  await daemon?.stop();
  await fake?.close();
});

test('real OpenClaw turns are stored with the exec exit code as next state; a session that did not opt in stores nothing', { timeout: 300_000 }, async () => {
  const plugin = pluginCopy();
  const optedIn = await openclawState(true, plugin);
  const optedOut = await openclawState(false, plugin);

  const first = await openclawIn(optedIn, ['agent', '--local', '--agent', 'main', '--message', 'list the folder /definitely-not-here']);
  assert.match(first.stdout, /That directory does not exist\./);
  const requestsIn = fake.requests.length;
  const second = await openclawIn(optedOut, ['agent', '--local', '--agent', 'main', '--message', 'a private request']);
  assert.match(second.stdout, /That directory does not exist\./);
  assert.ok(fake.requests.length > requestsIn, 'the opted-out session was served too');

  // The turn with the tool call is stored with all of its next state: exec's exit code 2.
  let exported: { sessionKey: string; action: { toolCalls: { name: string }[] }; nextState: { toolResults: { toolName: string; exitCode?: number; isError: boolean }[] } }[] = [];
  for (let i = 0; i < 100 && exported.length < 1; i++) {
    const out = await runCli(dataDir, ['sessions', 'export', '--json']);
    exported = out.stdout.trim() ? out.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
    if (exported.length < 1) await new Promise((r) => setTimeout(r, 200));
  }
  const toolTurn = exported.find((t) => t.action.toolCalls.some((c) => c.name === 'exec'));
  assert.ok(toolTurn, `no exec turn in ${JSON.stringify(exported)}`);
  assert.deepEqual(toolTurn.nextState.toolResults.map((r) => [r.toolName, r.exitCode]), [['exec', 2]]);

  // Only the opted-in session exists in the store; nothing of the other one was kept.
  const sessions = (await runCli(dataDir, ['sessions', 'list', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(sessions.length, 1, JSON.stringify(sessions));
  assert.equal(sessions[0].sessionKey, toolTurn.sessionKey);
  const stored = (await runCli(dataDir, ['sessions', 'show', sessions[0].sessionKey])).stdout;
  assert.ok(!stored.includes('a private request'));
  assert.match(stored, /list the folder \/definitely-not-here/);
  const status = JSON.parse((await runCli(dataDir, ['status', '--json'])).stdout);
  assert.ok(status.counters.droppedNotOptedIn === 0, 'the plugin filters locally: the opted-out session sent nothing but its opt-in state');
});
