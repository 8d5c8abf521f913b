// Hint memory in the real OpenClaw: the daemon in hints mode (no policy of its own), the agent on
// its own hosted model (the fake vLLM, configured as a provider of its own), and the plugin linking
// the two. `openclaw agent --local` does not run plugin commands (a `/clawrl hint …` message goes to
// the model as text), so the explicit hint is sent to the daemon as the plugin would send it: a
// feedback event for that session. A later run of another session with a related request must
// reach the model with the hint in its prompt; an unrelated one without.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readToken } from '../daemon/config.ts';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { TestClient, runCli, spawnDaemon, tempDir, type DaemonProcess } from './helpers.ts';
import { openclawHost, pluginPackage, type OpenclawHost } from './openclaw-host.ts';

const HINT = 'Run npm test with --verbose in packages/api and read the first failure before answering.';
const MODEL = { id: 'hosted-model', name: 'hosted-model', reasoning: false, input: ['text'], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 32_768, maxTokens: 4096 };

let host: OpenclawHost;
let fake: FakeVllm;
let daemon: DaemonProcess;
const dataDir = tempDir('clawrl-oc-hints-');

before(async () => {
  host = await openclawHost();
  fake = await startFakeVllm(() => ({ text: 'All green.' }), MODEL.id);
  daemon = await spawnDaemon(dataDir, ['--mode', 'hints']);
});

after(async () => {
  await daemon?.stop();
  await fake?.close();
});

async function poll<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 150; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const storedEvents = async (sessionKey: string) => {
  const shown = await runCli(dataDir, ['sessions', 'show', sessionKey]);
  return shown.code === 0 ? (JSON.parse(shown.stdout).events as { kind: string; content?: string; hintIds?: string[] }[]) : [];
};

test('real OpenClaw on its own model: a hint learned in one session is in the prompt of a later related request, not of an unrelated one', { timeout: 300_000 }, async () => {
  const stateDir = await host.state({
    dataDir,
    daemonUrl: daemon.url,
    plugin: await pluginPackage(),
    // The daemon is in hints mode: the fragment is the plugin entry alone (token, hook permissions).
    configArgs: [],
    edit: (config) => {
      assert.equal(config.models, undefined, 'no clawrl provider for a daemon that serves no model');
      config.plugins.entries.clawrl.config.optInByDefault = true;
      config.models = { providers: { hosted: { baseUrl: fake.url, apiKey: 'hosted-key', api: 'openai-completions', models: [MODEL] } } };
      config.agents = { defaults: { model: { primary: `hosted/${MODEL.id}` } } };
    },
  });
  const agent = (sessionKey: string, message: string) => host.openclawIn(stateDir, ['agent', '--local', '--agent', 'main', '--session-key', sessionKey, '--message', message]);
  const lastRequest = () => JSON.stringify(fake.requests.at(-1)!.body.messages);

  const first = await agent('agent:main:first', 'run the tests for the api package');
  assert.match(first.stdout, /All green\./);
  await poll('the first run at the daemon', async () => ((await storedEvents('agent:main:first')).some((e) => e.kind === 'model.output') ? true : undefined));

  const client = await TestClient.connect(daemon.wsUrl, readToken(dataDir)!);
  await client.hello('test-explicit-feedback');
  await client.sendEvents([{ kind: 'feedback', seq: 1, at: Date.now(), sessionKey: 'agent:main:first', hint: HINT }]);
  client.close();
  const learned = await poll('the hint to be learned', async () => {
    const out = (await runCli(dataDir, ['hints', 'list', '--json'])).stdout.trim();
    return out ? (JSON.parse(out) as { id: string; text: string }) : undefined;
  });
  assert.equal(learned.text, HINT);

  const requests = fake.requests.length;
  await agent('agent:main:second', 'please run the api tests again');
  assert.ok(fake.requests.length > requests, 'the agent asked its own model');
  assert.ok(lastRequest().includes('<clawrl-hints>'), lastRequest().slice(0, 2000));
  assert.ok(lastRequest().includes(HINT));

  await agent('agent:main:third', 'write a haiku about autumn leaves');
  assert.ok(!lastRequest().includes('<clawrl-hints>'));
  assert.ok(lastRequest().includes('autumn leaves'));

  // The daemon heard which hints the second run was shown, and stored the user's words without them.
  const second = await poll('the second run at the daemon', async () => {
    const events = await storedEvents('agent:main:second');
    return events.some((e) => e.kind === 'model.output') ? events : undefined;
  });
  assert.deepEqual(second.filter((e) => e.kind === 'hints.injected').map((e) => e.hintIds), [[learned.id]]);
  const users = second.filter((e) => e.kind === 'user.message').map((e) => e.content ?? '');
  assert.equal(users.length, 1);
  assert.match(users[0]!, /please run the api tests again/);
  assert.ok(!users[0]!.includes('clawrl-hints'), users[0]);
});
