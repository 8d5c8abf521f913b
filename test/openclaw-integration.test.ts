// The whole capture path in the real OpenClaw (openclaw@2026.9.6 on Node 24, installed by
// scripts/openclaw-host.sh): the plugin installed with `plugins install --link`, a real daemon
// serving through its upstream backend, and `openclaw agent --local` turns whose model calls go
// to the daemon. The upstream is the fake vLLM, scripted as a model that first calls `exec`
// with a command that exits 2, then answers in text once the tool result is in its context.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { runCli, spawnDaemon, tempDir, type DaemonProcess } from './helpers.ts';
import { openclawHost, pluginPackage, type OpenclawHost } from './openclaw-host.ts';

let host: OpenclawHost;
let fake: FakeVllm;
let daemon: DaemonProcess;
const dataDir = tempDir('clawrl-oc-data-');

const openclawIn = (stateDir: string, args: string[]) => host.openclawIn(stateDir, args);
const openclawState = (optInByDefault: boolean, plugin: string) =>
  host.state({
    dataDir,
    daemonUrl: daemon.url,
    plugin,
    configArgs: ['--primary'],
    edit: (config) => void (config.plugins.entries.clawrl.config.optInByDefault = optInByDefault),
  });

before(async () => {
  host = await openclawHost();
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
  const plugin = await pluginPackage();
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
