// The plugin in a running OpenClaw gateway, used as a person uses it: the real gateway
// (openclaw@2026.9.6 on Node 24, `openclaw gateway run` on loopback with token auth) with the
// plugin linked, turns and `/clawrl` commands sent as WebChat sends them (`gateway call chat.send`,
// then `agent.wait`), a real daemon serving through its upstream backend, and the fake vLLM as the
// model behind it (a FAKE: a hosted LLM cannot run here). A second fake is the fallback model.
// One gateway serves the whole file: it takes 15-140 s to start.
//
// One session goes through what people do: a message before opting in, `/clawrl on`, a command
// between turns, good then a hint, bad then good, two messages in a row, off and on again, a
// model attempt that fails and is retried, a weights change, and the daemon going away. The
// checks read what the daemon stored and exports, and what the chat was sent. The upstream backend
// cannot change weights, so for the notice the daemon comes back with the embedded one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { repoRoot, runCli, spawnDaemon, tempDir, until, type DaemonProcess } from './helpers.ts';
import { openclawHost, pluginPackage, type OpenclawHost } from './openclaw-host.ts';

const SESSION = 'agent:main:gateway-test';
const TOKEN = `gw-${Math.random().toString(36).slice(2)}`;
const dataDir = tempDir('clawrl-gw-data-');
const chatLog = join(tempDir('clawrl-gw-chat-'), 'chat.jsonl');

let host: OpenclawHost;
let policy: FakeVllm;
let backup: FakeVllm;
let daemon: DaemonProcess;
let gateway: ChildProcess;
let gatewayLog = '';
let stateDir: string;
let gatewayStartMs = 0;

/** The user's text in a request: the last user message that is not OpenClaw's internal context, without the envelope prefix. */
function typedText(body: Record<string, unknown>): string {
  const users = (body.messages as { role: string; content: unknown }[]).filter((m) => m.role === 'user');
  const texts = users.map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content))).filter((t) => !t.includes('OPENCLAW_INTERNAL_CONTEXT'));
  return (texts.at(-1) ?? '').replace(/^\[[^\]]*UTC\] /, '');
}

let flakyFailed = false;

/** A loopback port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

before(async () => {
  host = await openclawHost();
  policy = await startFakeVllm((body) => {
    const text = typedText(body);
    // The first attempt at this one breaks mid-stream (an engine failure); OpenClaw retries it.
    if (text.includes('FLAKY')) {
      if (!flakyFailed) return (flakyFailed = true), { text: 'partial answer', failMidStream: 'engine died' };
      return { text: 'Answer: FLAKY fifth' };
    }
    return { text: `Answer: ${text.split('\n')[0]}` };
  }, 'policy');
  backup = await startFakeVllm([{ text: 'Backup model here.' }], 'backup-model');
  daemon = await spawnDaemon(dataDir, ['--backend', 'upstream', '--upstream-url', policy.url, '--judge', 'rules']);
  const port = await freePort();
  stateDir = await host.state({
    dataDir,
    daemonUrl: daemon.url,
    plugin: await pluginPackage(),
    configArgs: ['--primary'],
    edit: (config) => {
      config.gateway = { mode: 'local', port, bind: 'loopback', auth: { mode: 'token', token: TOKEN } };
      Object.assign(config.plugins.entries.clawrl.config, { optInByDefault: false, notifyOnWeights: true });
      config.models.providers.backup = {
        baseUrl: backup.url,
        apiKey: 'none',
        api: 'openai-completions',
        models: [{ id: 'backup-model', name: 'backup-model', reasoning: false, input: ['text'], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 32_768, maxTokens: 1024 }],
      };
      config.agents.defaults.model.fallbacks = ['backup/backup-model'];
      config.plugins.entries['clawrl-test-chat-observer'] = { enabled: true, hooks: { allowConversationAccess: true } };
    },
  });
  await host.openclawIn(stateDir, ['plugins', 'install', '--link', join(repoRoot, 'test', 'openclaw-chat-observer'), '--force', '--accept-capabilities']);
  const starting = Date.now();
  gateway = host.spawnIn(stateDir, ['gateway', 'run'], { CLAWRL_TEST_CHAT_LOG: chatLog });
  gateway.stdout!.on('data', (d) => (gatewayLog += d));
  gateway.stderr!.on('data', (d) => (gatewayLog += d));
  await until(() => gatewayLog.includes('[gateway] ready') || gateway.exitCode !== null, 'the gateway to start', 300_000);
  assert.ok(gatewayLog.includes('[gateway] ready'), `the gateway exited: ${gatewayLog.slice(-3000)}`);
  gatewayStartMs = Date.now() - starting;
});

after(async () => {
  if (gateway && gateway.exitCode === null) {
    gateway.kill('SIGTERM');
    const stopped = await Promise.race([once(gateway, 'exit').then(() => true), new Promise((r) => setTimeout(r, 15_000, false))]);
    if (!stopped) gateway.kill('SIGKILL');
  }
  await daemon?.stop();
  await policy?.close();
  await backup?.close();
});

/** A gateway method, as a client calls it. */
async function call(method: string, params: Record<string, unknown>): Promise<Record<string, any>> {
  const out = await host.openclawIn(stateDir, ['gateway', 'call', method, '--params', JSON.stringify(params), '--json', '--timeout', '120000', '--token', TOKEN], 150_000);
  return JSON.parse(out.stdout);
}

let sent = 0;
/** Sends a chat message (or command) as WebChat does and waits until the gateway is done with it. */
async function say(message: string): Promise<Record<string, any>> {
  const idempotencyKey = `gw-test-${++sent}`;
  const ack = await call('chat.send', { sessionKey: SESSION, message, idempotencyKey });
  const done = await call('agent.wait', { runId: ack.runId ?? idempotencyKey, timeoutMs: 110_000 });
  assert.notEqual(done.status, 'timeout', `${message}: ${JSON.stringify(done)}`);
  return done;
}

interface Exported {
  action: { text: string };
  nextState: { userMessage?: string; feedback?: { rating?: string; hint?: string }; none?: boolean };
  reward: number | null;
  hint: string | null;
}

async function exported(): Promise<Exported[]> {
  const out = await runCli(dataDir, ['sessions', 'export', '--json', '--session', SESSION]);
  return out.stdout.trim() ? out.stdout.trim().split('\n').map((l) => JSON.parse(l)) : [];
}

async function storedEvents(): Promise<{ kind: string; runId?: string; content?: string; assistantTexts?: string[] }[]> {
  const out = await runCli(dataDir, ['sessions', 'show', SESSION]);
  return out.code === 0 ? JSON.parse(out.stdout).events : [];
}

/** What the chat was sent, in order. */
function chat(): string[] {
  if (!existsSync(chatLog)) return [];
  return readFileSync(chatLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.sessionKey === SESSION).map((m) => m.content);
}

test('a chat session in a real gateway: exactly what the person typed, every feedback, no failed attempts, a notice of new weights, a quick fallback while the daemon is down', { timeout: 900_000 }, async (t) => {
  t.diagnostic(`gateway ready in ${gatewayStartMs} ms`);
  await say('hello before opting in');
  await say('/clawrl on');
  await say('first question');
  await say('/clawrl status');
  await say('/clawrl good');
  await say('/clawrl hint Mention the file name.');
  await say('second question');
  await say('/clawrl bad');
  await say('/clawrl good');
  await say('third question');
  await say('fourth question');
  await say('/clawrl off');
  await say('not captured while off');
  await say('/clawrl on');
  await say('FLAKY fifth');
  assert.ok(flakyFailed, 'the first attempt at the fifth question failed');

  await say('sixth question');

  // What the daemon stored: one user.message per message, as typed; no command, nothing from before
  // the opt-in or while out, no envelope.
  const typed = ['first question', 'second question', 'third question', 'fourth question', 'FLAKY fifth', 'sixth question'];
  const events = await until(async () => {
    const e = await storedEvents();
    return e.filter((x) => x.kind === 'user.message').length >= typed.length && e;
  }, 'the user messages to be stored', 60_000);
  assert.deepEqual(events.filter((e) => e.kind === 'user.message').map((e) => e.content), typed);
  // A failed attempt sends nothing: every run has at most one run.end and one model.output, none empty.
  for (const kind of ['run.end', 'model.output']) {
    const runs = events.filter((e) => e.kind === kind).map((e) => e.runId);
    assert.equal(new Set(runs).size, runs.length, `${kind} per run: ${JSON.stringify(runs)}`);
  }
  for (const out of events.filter((e) => e.kind === 'model.output')) assert.notDeepEqual(out.assistantTexts, ['partial answer']);

  // What training gets.
  const turns = await until(async () => {
    const t = await exported();
    const flaky = t.find((x) => x.action.text === 'Answer: FLAKY fifth');
    return flaky?.nextState.userMessage !== undefined && t.every((x) => x.reward !== null || x.nextState.none) && t;
  }, 'the turns to be assembled and scored', 60_000);
  const turnOf = (answer: string) => {
    const turn = turns.find((t) => t.action.text === `Answer: ${answer}`);
    assert.ok(turn, `no turn for ${answer} in ${JSON.stringify(turns)}`);
    return turn;
  };
  assert.deepEqual(turnOf('first question').nextState.feedback, { rating: 'good', hint: 'Mention the file name.' }, 'good, then a hint: both count');
  assert.deepEqual([turnOf('first question').reward, turnOf('first question').hint], [1, 'Mention the file name.']);
  assert.deepEqual(turnOf('second question').nextState.feedback, { rating: 'good' }, 'bad, then good: the latest rating');
  assert.equal(turnOf('second question').reward, 1);
  assert.equal(turnOf('third question').nextState.userMessage, 'fourth question', 'two messages in a row');
  assert.equal(turnOf('fourth question').nextState.none, true, 'what was said while out is no next state');
  assert.equal(turnOf('FLAKY fifth').nextState.userMessage, 'sixth question');
  assert.equal(turns.some((t) => t.action.text === 'partial answer'), false, 'the failed attempt is no turn');
  assert.equal(turns.some((t) => /clawrl|not captured|before opting/.test(JSON.stringify(t.nextState))), false, JSON.stringify(turns));
  assert.equal(turns.some((t) => /^\[\w{3} \d{4}-/.test(t.nextState.userMessage ?? '')), false, 'no envelope prefix');
  const hintLines = (await runCli(dataDir, ['hints', 'export', '--json'])).stdout.trim();
  const hints = (hintLines ? hintLines.split('\n').map((l) => JSON.parse(l)) : []) as { text: string; context: string; origin: string }[];
  const learned = hints.find((h) => h.text === 'Mention the file name.');
  assert.ok(learned, `the hint given after a rating is learned: ${JSON.stringify(hints)}`);
  assert.deepEqual([learned.origin, learned.context], ['feedback', 'first question']);

  // The daemon goes away: the next turn is answered by the fallback model at once, not after a minute of retries.
  const port = new URL(daemon.url).port;
  await daemon.stop();
  const started = Date.now();
  const down = await say('are you there?');
  const took = Date.now() - started;
  assert.equal(down.terminalReply?.text, 'Backup model here.', JSON.stringify(down));
  assert.ok(took < 30_000, `the turn took ${took} ms`);
  t.diagnostic(`daemon down: chat.send to agent.wait answered by the fallback in ${took} ms`);

  // The daemon is back, with a backend that can change weights (the embedded one, same store and
  // port). Once the plugin has reconnected, runs go to it again; a pin makes the next reply
  // the person sees begin with the notice, once; the model's own text stays as it was.
  const connections = () => gatewayLog.split('clawrl: connected to').length - 1;
  const before = connections();
  daemon = await spawnDaemon(dataDir, ['--port', port, '--judge', 'rules']);
  await until(() => connections() > before, 'the plugin to reconnect', 60_000);
  const pinned = await runCli(dataDir, ['weights', 'pin', 'base']);
  assert.equal(pinned.code, 0, pinned.stderr);
  await until(() => gatewayLog.includes('clawrl: new weights base'), 'the plugin to hear of the pin', 30_000);
  const seventh = await say('seventh question');
  const reply = seventh.terminalReply?.text as string;
  assert.ok(reply && reply !== 'Backup model here.', `the daemon answers again: ${JSON.stringify(seventh)}`);
  assert.equal(reply.startsWith('[clawrl]'), false, "the model's text carries no notice");
  await say('eighth question');
  const notices = chat().filter((m) => m.startsWith('[clawrl]'));
  assert.deepEqual(notices, [`[clawrl] The weights were pinned to base, which answers from this reply on.\n\n${reply}`], JSON.stringify(chat()));
});
