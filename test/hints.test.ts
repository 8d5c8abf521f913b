// Hint memory: learning, merging, fading, eviction and redaction in the daemon; the plugin's copy,
// ranking and budget; and the whole path through the plugin entry's hooks and a real daemon in
// hints mode (the agent's model is not the daemon's: turns come from the plugin's events).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startDaemon } from '../daemon/server.ts';
import { Store, type SampleRecord, type ScoreRecord, type TurnRecord } from '../daemon/store.ts';
import { HintMemory, FADED_BELOW, hintWeight } from '../daemon/hints.ts';
import { EventSamples } from '../daemon/event-samples.ts';
import { TurnAssembler } from '../daemon/turns.ts';
import { createLogger } from '../daemon/log.ts';
import { HintCache } from '../plugin/hints.ts';
import type { PromptBuildResult } from '../plugin/host-types.ts';
import entry from '../plugin/index.ts';
import { HINTS_BLOCK_START, formatHintsBlock, type HintEntry, type HintsSnapshot } from '../protocol/index.ts';
import { fakeApi } from './fake-openclaw.ts';
import { runCli, tempDir, until } from './helpers.ts';

const log = createLogger('silent');
const HINT = 'Run npm test with --verbose in packages/api and read the first failure before answering.';

/**
 * The plugin, registered with a fake OpenClaw, pointed at a daemon; `run` drives one agent run
 * through its hooks. Each is a process of its own (its own state folder, as a runtime is one per
 * folder in a process) of one OpenClaw install: the folders share the install's id.
 */
function plugin(daemonUrl: string, token: string, config: Record<string, unknown> = {}) {
  const stateRoot = tempDir('clawrl-plugin-state-');
  mkdirSync(join(stateRoot, 'clawrl'));
  writeFileSync(join(stateRoot, 'clawrl', 'install-id'), 'clawrl-install-hints-test');
  const { api, hooks, recorded } = fakeApi({ daemonUrl, token, optInByDefault: true, ...config }, stateRoot);
  entry.register(api);
  const fire = (name: string, event: unknown, ctx: unknown) => hooks.get(name)!(event, ctx);
  let runs = 0;
  return {
    warnings: recorded.warnings,
    async run(sessionKey: string, request: string, reply = 'Done.') {
      const runId = `${sessionKey}-run-${++runs}`;
      const sessionId = `${sessionKey}-id`;
      const ctx = { runId, agentId: 'main', sessionKey, sessionId, trigger: 'user' };
      const built = (await fire('before_prompt_build', { prompt: request, currentUserMessage: request, messages: [] }, ctx)) as PromptBuildResult | undefined;
      // What OpenClaw then reports to before_agent_run: the prompt with the prepended context.
      fire('before_agent_run', { prompt: built?.prependContext ? `${built.prependContext}\n\n${request}` : request, messages: [] }, ctx);
      fire('model_call_started', { runId, callId: `${runId}:model:1`, sessionKey, sessionId, provider: 'hosted', model: 'gpt-x' }, ctx);
      fire('model_call_ended', { runId, callId: `${runId}:model:1`, sessionKey, sessionId }, ctx);
      fire('agent_end', { runId, success: true }, ctx);
      fire('llm_output', { runId, sessionId, assistantTexts: [reply], lastAssistant: { role: 'assistant', content: [{ type: 'text', text: reply }] } }, ctx);
      return { runId, injected: built?.prependContext };
    },
    command: async (sessionKey: string, args: string) => (await recorded.commands[0]!.handler({ args, sessionKey })).text,
    stop: () => recorded.services[0]!.stop!({ stateDir: '', logger: api.logger }),
  };
}

const hintsDaemon = () => startDaemon({ dataDir: tempDir(), port: 0, log, token: 'tok', mode: 'hints' });

test('hints mode: a hint learned in one session reaches a later, related request of another session; unrelated ones get none; bad feedback fades it', async () => {
  const daemon = await hintsDaemon();
  const first = plugin(daemon.wsUrl, daemon.token);
  const later = plugin(daemon.wsUrl, daemon.token);
  try {
    await first.run('agent:main:alpha', 'run the tests for the api package', 'All green.');
    assert.match(await first.command('agent:main:alpha', `hint ${HINT}`), /hint noted/);
    const [learned] = await until(() => daemon.hints.list().length === 1 && daemon.hints.list(), 'the hint to be learned', 10_000);
    assert.equal(learned!.text, HINT);
    assert.equal(learned!.origin, 'feedback');
    assert.deepEqual(learned!.scope, { agent: 'main' });
    assert.equal(learned!.context, 'run the tests for the api package');
    // The turn came from events alone and is not trainable.
    const turn = [...daemon.store.turnsOf('agent:main:alpha')][0]!;
    assert.equal(turn.weightVersion, 'external');
    assert.equal(daemon.store.trainQueue.getCount(), 0);

    // A fresh plugin process: its first hook waits for the first fetch of the daemon's hints.
    const related = await later.run('agent:main:beta', 'please run the api tests again');
    const block = related.injected ?? '';
    assert.ok(block.startsWith(HINTS_BLOCK_START), `no hints block in ${block}`);
    assert.ok(block.includes(HINT));
    assert.ok(block.includes(`(hint ${learned!.id})`));
    const unrelated = await later.run('agent:main:gamma', 'write a haiku about autumn leaves');
    assert.equal(unrelated.injected, undefined);

    // The daemon hears which hints the run was shown; the stored user message is the user's alone.
    const betaEvents = await until(() => {
      const events = [...daemon.store.sessionEventsOf('agent:main:beta')];
      return events.some((e) => e.kind === 'model.output') && events;
    }, 'beta events', 10_000);
    assert.deepEqual(betaEvents.filter((e) => e.kind === 'hints.injected').map((e) => e.kind === 'hints.injected' && [e.runId, e.hintIds]), [[related.runId, [learned!.id]]]);
    assert.deepEqual(betaEvents.filter((e) => e.kind === 'user.message').map((e) => e.kind === 'user.message' && e.content), ['please run the api tests again']);

    // `/clawrl bad` on the run that was shown the hint contradicts it: it fades and is no longer served.
    assert.match(await later.command('agent:main:beta', 'bad'), /last turn was bad/);
    const faded = await until(() => daemon.hints.hints.get(learned!.id)?.bad === 1 && daemon.hints.hints.get(learned!.id), 'the hint to fade', 10_000);
    assert.ok(hintWeight(faded) < FADED_BELOW);
    const served = (await (await fetch(`${daemon.url}/hints`, { headers: { authorization: 'Bearer tok' } })).json()) as HintsSnapshot;
    assert.deepEqual(served.hints, []);
  } finally {
    await Promise.all([first.stop(), later.stop()]);
    await daemon.close();
  }
});

test('daemon down: the turn proceeds without hints; a copy fetched earlier keeps serving', async () => {
  const nowhere = plugin('ws://127.0.0.1:1/ws', 'tok');
  const started = performance.now();
  const { injected } = await nowhere.run('agent:main:a', 'please run the api tests again');
  assert.equal(injected, undefined);
  assert.ok(performance.now() - started < 2_000, 'the hook does not hang on an unreachable daemon');
  assert.ok(nowhere.warnings.some((w) => /could not fetch hints/.test(w)), nowhere.warnings.join('\n'));
  await nowhere.stop();

  const daemon = await hintsDaemon();
  await daemon.hints.learn({ text: HINT, context: 'run the tests for the api package', origin: 'feedback', sessionKey: 'agent:main:x', source: 'agent:main:x#0' });
  const synced = plugin(daemon.wsUrl, daemon.token);
  assert.ok((await synced.run('agent:main:b', 'run the api tests')).injected?.includes(HINT));
  await daemon.close();
  assert.ok((await synced.run('agent:main:c', 'run the api tests once more')).injected?.includes(HINT));
  await synced.stop();
});

test('sessions that did not opt in get hints only with hintsForAllSessions, and send nothing; /clawrl hints and forget', async () => {
  const daemon = await hintsDaemon();
  const id = await daemon.hints.learn({ text: HINT, context: 'run the tests for the api package', origin: 'feedback', sessionKey: 'agent:main:x', source: 'agent:main:x#0' });
  const strict = plugin(daemon.wsUrl, daemon.token, { optInByDefault: false });
  const open = plugin(daemon.wsUrl, daemon.token, { optInByDefault: false, hintsForAllSessions: true });
  try {
    assert.equal((await strict.run('agent:main:p', 'run the api tests')).injected, undefined);
    assert.ok((await open.run('agent:main:q', 'run the api tests')).injected?.includes(HINT));
    // A barrier: each link then sends an opted-in session's run, after whatever it sent before.
    for (const [link, key] of [[strict, 'agent:main:barrier-1'], [open, 'agent:main:barrier-2']] as const) {
      await link.command(key, 'on');
      await link.run(key, 'something else');
    }
    await until(() => daemon.store.listSessions().length >= 2, 'the barrier sessions stored');
    assert.deepEqual(daemon.store.listSessions().map((s) => s.sessionKey).sort(), ['agent:main:barrier-1', 'agent:main:barrier-2'], 'nothing of either session reached the daemon');
    assert.match(await open.command('agent:main:q', 'hints'), new RegExp(`${id} \\(weight 1\\.00\\): Run npm test`));
    assert.match(await open.command('agent:main:q', `forget ${id}`), /forgot hint/);
    assert.deepEqual(daemon.hints.list(), []);
    assert.match(await open.command('agent:main:q', `forget ${id}`), /no hint/);
    assert.equal((await open.run('agent:main:q', 'run the api tests')).injected, undefined, 'forgotten here at once');
  } finally {
    await Promise.all([strict.stop(), open.stop()]);
    await daemon.close();
  }
});

test('near-duplicates merge: evidence sums, the clearer text stays, a turn counts once', async () => {
  const store = await Store.open(tempDir());
  const memory = new HintMemory({ store, log });
  const learn = (text: string, source: string, origin: 'judge' | 'feedback' = 'judge', sessionKey = 'agent:main:s') =>
    memory.learn({ text, context: 'run the tests', origin, sessionKey, source });
  const a = await learn('Run npm test with --verbose before reporting a failure.', 's#0');
  assert.equal(await learn('Before reporting a failure, run npm test with the --verbose flag.', 's#1'), a);
  assert.equal(await learn('Before reporting a failure, run npm test with the --verbose flag.', 's#1'), a, 'the same turn again');
  let hint = memory.hints.get(a)!;
  assert.equal(hint.evidence, 2);
  assert.equal(hint.text, 'Run npm test with --verbose before reporting a failure.', 'the shorter of two judge texts');
  assert.deepEqual(hint.sources, ['s#0', 's#1']);
  await learn('Always run npm test with --verbose before reporting any failure.', 's#2', 'feedback');
  hint = memory.hints.get(a)!;
  assert.equal(hint.evidence, 3);
  assert.equal(hint.text, 'Always run npm test with --verbose before reporting any failure.', "the user's own words win");
  assert.notEqual(await learn('Use pnpm, not npm, in this repository.', 's#3'), a);
  assert.notEqual(await learn('Run npm test with --verbose before reporting a failure.', 'o#0', 'judge', 'agent:ops:o'), a, 'another agent is another scope');
  assert.equal(memory.list().length, 3);
  await store.close();
});

test("feedback on one turn: each of the user's hints is its own lesson, from what the user typed; a changed rating replaces the one counted", async () => {
  const store = await Store.open(tempDir());
  const memory = new HintMemory({ store, log });
  const sessionKey = 'agent:main:s';
  const shown = await memory.learn({ text: 'Use ls -la to list files.', context: 'list', origin: 'judge', sessionKey, source: 'old#0' });
  const event = (seq: number, e: Record<string, unknown>) => ({ seq, at: seq, sessionKey, runId: 'r1', ...e }) as never;
  await store.appendEvents('c', [
    event(1, { kind: 'session.optin', runId: undefined }),
    event(2, { kind: 'hints.injected', hintIds: [shown] }),
    event(3, { kind: 'user.message', content: 'list the files here' }),
  ]);
  const sample = (await store.recordSample({
    id: 'x1', sessionKey, runId: 'r1', side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
    // What the model was sent in a gateway: the message behind OpenClaw's envelope prefix.
    requestMessages: [{ role: 'user', content: '[Wed 2026-12-02 02:23 UTC] list the files here' }],
    promptTokens: [1], responseTokens: [2], logprobs: [-0.1], text: 'Here.', toolCalls: [], finishReason: 'stop',
  }))!;
  const turn = (feedback: { rating?: 'good' | 'bad'; hint?: string }) =>
    ({ sessionKey, turnIndex: sample.ordinal, sampleId: sample.id, createdAt: 0, weightVersion: 'base', action: { text: 'Here.', toolCalls: [] }, nextState: { toolResults: [], feedback }, reward: null, hint: null }) as TurnRecord;
  const score = (hint: string | null) => ({ hint }) as ScoreRecord;
  const counts = () => { const h = memory.hints.get(shown)!; return [h.good, h.bad]; };

  await memory.learnFrom(turn({ rating: 'bad' }), score(null));
  assert.deepEqual(counts(), [0, 1]);
  await memory.learnFrom(turn({ rating: 'bad' }), score(null));
  assert.deepEqual(counts(), [0, 1], 'rescoring the same rating counts nothing');
  await memory.learnFrom(turn({ rating: 'good' }), score(null));
  assert.deepEqual(counts(), [1, 0], 'bad then good: the turn counts as good');

  const hints = 'Say which folder you listed.\n\nShow hidden files too.';
  await memory.learnFrom(turn({ rating: 'good', hint: hints }), score(hints));
  const learned = memory.list().filter((h) => h.id !== shown);
  assert.deepEqual(learned.map((h) => [h.text, h.origin, h.context]).sort(), [
    ['Say which folder you listed.', 'feedback', 'list the files here'],
    ['Show hidden files too.', 'feedback', 'list the files here'],
  ]);
  assert.deepEqual(counts(), [1, 0]);
  await store.close();
});

test('the weakest hint is evicted beyond the cap; secrets are redacted before storage', async () => {
  const store = await Store.open(tempDir());
  const memory = new HintMemory({ store, log, maxHints: 3 });
  const ids = [];
  for (const [i, text] of ['Deploy with make deploy-staging.', 'Lint with eslint --fix first.', 'Check the changelog before a release.'].entries()) {
    ids.push(await memory.learn({ text, context: '', origin: 'judge', sessionKey: 'agent:main:s', source: `s#${i}` }));
  }
  await memory.hints.put(ids[1]!, { ...memory.hints.get(ids[1]!)!, bad: 1 });
  const secret = await memory.learn({
    text: 'Call the API with key sk-proj-abcdefghijklmnopqrstuvwxyz0123 and never ask again.',
    context: 'curl -H "Authorization: Bearer abcdefghijklmnopqrstuvwx" https://api.example.com',
    origin: 'feedback',
    sessionKey: 'agent:main:s',
    source: 's#9',
  });
  assert.deepEqual(memory.list().map((h) => h.id).sort(), [ids[0]!, ids[2]!, secret].sort(), 'the contradicted hint went');
  const stored = JSON.stringify(memory.hints.get(secret));
  assert.ok(!stored.includes('sk-proj-abcdefghijklmnopqrstuvwxyz0123') && !stored.includes('abcdefghijklmnopqrstuvwx"'), stored);
  assert.match(stored, /\[REDACTED\]/);
  await store.close();
});

test("hint memory counts in the store's size (--max-store-mb)", async () => {
  const store = await Store.open(tempDir());
  const memory = new HintMemory({ store, log });
  const before = store.usedBytes();
  // Distinct hints (no two merge): enough to fill several pages.
  for (let i = 0; i < 200; i++) {
    await memory.learn({ text: `Rule ${i}: before task${i} run checker${i} with flag${i} on target${i}.`, context: `context ${i} `.repeat(20), origin: 'judge', sessionKey: 'agent:main:s', source: `s#${i}` });
  }
  assert.equal(memory.list().length, 200);
  assert.ok(store.usedBytes() >= before + 200 * 200, `${store.usedBytes()} bytes after 200 hints, ${before} before`);
  await store.close();
});

test('the plugin copy: ETag polling, scope, top-k and the token budget', async () => {
  const long = (topic: string, i: number) => `When you ${topic}, first check the staging server health page and the deploy log number ${i}; then retry once.`;
  const hints: HintEntry[] = [
    ...Array.from({ length: 8 }, (_, i) => ({ id: `h${i}`, text: long('deploy the staging server', i), context: 'deploy staging', scope: { agent: 'main' }, weight: 1 + i })),
    { id: 'other', text: long('deploy the staging server', 99), context: '', scope: { agent: 'ops' }, weight: 50 },
    { id: 'mine', text: long('deploy the staging server', 98), context: '', scope: { agent: 'main', sessionKey: 'agent:main:me' }, weight: 50 },
  ];
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers['if-none-match'] as string | undefined);
    if (req.headers['if-none-match'] === '"7"') return void res.writeHead(304).end();
    res.writeHead(200, { etag: '"7"', 'content-type': 'application/json' }).end(JSON.stringify({ revision: 7, hints }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const cache = new HintCache({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hints`, token: 't', logger: { warn() {} } });
  await cache.refresh();
  await cache.refresh();
  assert.deepEqual(seen, [undefined, '"7"']);

  const request = 'deploy the staging server now';
  const three = cache.select(request, 'main', 'agent:main:you', { topK: 3, maxTokens: 10_000 });
  assert.deepEqual(three.map((h) => h.id), ['h7', 'h6', 'h5'], 'strongest first, other scopes left out');
  assert.equal(cache.select(request, 'main', 'agent:main:me', { topK: 1, maxTokens: 10_000 })[0]!.id, 'mine');
  const budget = 80;
  const fitted = cache.select(request, 'main', 'agent:main:you', { topK: 8, maxTokens: budget });
  assert.ok(fitted.length >= 1 && fitted.length < 8, `${fitted.length} hints`);
  assert.ok(formatHintsBlock(fitted).length / 4 <= budget);
  assert.deepEqual(cache.select('bake bread', 'main', undefined, { topK: 3, maxTokens: 1000 }), []);
  assert.deepEqual(cache.select('the staging area of git', 'main', undefined, { topK: 3, maxTokens: 1000 }), [], 'one shared word is not enough');
  server.close();
});

test('samples from events: a run the daemon did not serve becomes an untrainable turn; a served run does not', async () => {
  const store = await Store.open(tempDir());
  let seq = 0;
  const ev = (e: Record<string, unknown>) => ({ seq: ++seq, at: Date.now(), sessionKey: 's', ...e }) as never;
  await store.appendEvents('c', [ev({ kind: 'session.optin' })]);
  const served: Omit<SampleRecord, 'ordinal' | 'logMark'> = {
    id: 'served', sessionKey: 's', runId: 'r1', side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
    requestMessages: [{ role: 'user', content: 'hi' }], promptTokens: [1], responseTokens: [2], logprobs: [-1], text: 'hello', toolCalls: [], finishReason: 'stop',
  };
  await store.recordSample(served);
  await store.appendEvents('c', [
    ev({ kind: 'model.output', runId: 'r1', assistantTexts: ['hello'], toolCalls: [] }),
    ev({ kind: 'user.message', runId: 'r2', content: 'list the files' }),
    ev({ kind: 'model.call', runId: 'r2', callId: 'r2:model:1', provider: 'hosted', model: 'gpt-x', side: false }),
    ev({ kind: 'model.output', runId: 'r2', assistantTexts: ['a.txt b.txt'], toolCalls: [] }),
    ev({ kind: 'user.message', runId: 'r3', content: 'thanks' }),
  ]);
  const derive = new EventSamples(store);
  assert.equal(await derive.deriveOnce(), 1);
  assert.equal(await derive.deriveOnce(), 0, 'never twice');
  const sample = [...store.samplesOf('s')].find((s) => s.runId === 'r2')!;
  assert.deepEqual([sample.text, sample.model, sample.requestMessages, sample.responseTokens], ['a.txt b.txt', 'gpt-x', [{ role: 'user', content: 'list the files' }], []]);
  await new TurnAssembler({ store, log }).assembleOnce();
  assert.equal(store.turns.get(['s', sample.ordinal])!.nextState.userMessage, 'thanks', 'the next state is what followed the output event');
  await store.close();
});

test('samples from events: a served response still being redacted (a long session) when its run ends is stored once, as served', async () => {
  const store = await Store.open(tempDir());
  let seq = 0;
  const ev = (e: Record<string, unknown>) => ({ seq: ++seq, at: Date.now(), sessionKey: 's', ...e }) as never;
  await store.appendEvents('c', [ev({ kind: 'session.optin' }), ev({ kind: 'user.message', runId: 'r1', content: 'go' })]);
  // Over INLINE_REDACT_CHARS: redacted in the worker, for tens to hundreds of milliseconds.
  const served = store.recordSample({
    id: 'served', sessionKey: 's', runId: 'r1', side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
    requestMessages: [{ role: 'tool', content: 'x'.repeat(400_000) }, { role: 'user', content: 'go' }], promptTokens: [1], responseTokens: [2], logprobs: [-1], text: 'done', toolCalls: [], finishReason: 'stop',
  });
  // The run's end reaches the daemon meanwhile, and the pass deriving samples runs at once.
  await store.appendEvents('c', [ev({ kind: 'model.output', runId: 'r1', assistantTexts: ['done'], toolCalls: [] })]);
  assert.equal(await new EventSamples(store).deriveOnce(), 0, 'the run was served: nothing to derive');
  await served;
  assert.deepEqual([...store.runSamplesOf('s', 'r1')].map((sample) => sample.id), ['served']);
  await store.close();
});

test('samples from events over a backlog of several slices: each run once (even with two outputs), the place saved as the pass goes (only past outputs), a rerun from an older place adds nothing', async () => {
  const store = await Store.open(tempDir());
  let seq = 0;
  const ev = (e: Record<string, unknown>) => ({ seq: ++seq, at: Date.now(), sessionKey: 's', ...e }) as never;
  await store.appendEvents('c', [ev({ kind: 'session.optin' })]);
  // 1,500 runs of three events: 4,501 log positions, more than two slices.
  for (let batch = 0; batch < 15; batch++) {
    const events: never[] = [];
    for (let r = batch * 100; r < (batch + 1) * 100; r++) {
      events.push(ev({ kind: 'user.message', runId: `r${r}`, content: `request ${r}` }), ev({ kind: 'model.call', runId: `r${r}`, callId: `r${r}:model:1`, provider: 'hosted', model: 'gpt-x', side: false }));
      events.push(ev({ kind: 'model.output', runId: `r${r}`, assistantTexts: [`reply ${r}`], toolCalls: [] }));
    }
    await store.appendEvents('c', events);
  }
  // A second output for a run, in the same slice as its first: the run still makes one sample.
  await store.appendEvents('c', [ev({ kind: 'model.output', runId: 'r1499', assistantTexts: ['again'], toolCalls: [] })]);
  const marks: number[] = [];
  const setMark = store.setMark.bind(store);
  store.setMark = async (name, value) => (name === 'eventSamplesCursor' && marks.push(value), setMark(name, value));
  // The pass reads the model.output events through their index, not the 4,502 positions of the log.
  const getRange = store.events.getRange;
  store.events.getRange = () => assert.fail('the pass read the whole log');
  assert.equal(await new EventSamples(store).deriveOnce(), 1500);
  store.events.getRange = getRange;
  assert.ok(marks.length >= 3, `the place was saved ${marks.length} times`);
  assert.equal(marks.at(-1), store.eventLogPosition());
  assert.equal(store.mark('eventSamplesCursor'), store.eventLogPosition());
  // A pass cut short after its first slice leaves the place there; rerunning from it makes no duplicate.
  await setMark('eventSamplesCursor', marks[0]!);
  assert.equal(await new EventSamples(store).deriveOnce(), 0);
  assert.equal([...store.samplesOf('s')].length, 1500);
  // Events without an output move the pass on without a write (a commit per stored batch, else).
  marks.length = 0;
  await store.appendEvents('c', [ev({ kind: 'user.message', runId: 'r1500', content: 'no reply yet' })]);
  assert.equal(await new EventSamples(store).deriveOnce(), 0);
  assert.deepEqual(marks, []);
  await store.close();
});

test('clawrl-daemon hints list|show|export|rm', async () => {
  const dataDir = tempDir();
  const store = await Store.open(dataDir);
  const id = await new HintMemory({ store, log }).learn({ text: HINT, context: 'tests', origin: 'feedback', sessionKey: 'agent:main:s', source: 's#0' });
  await store.close();
  const list = await runCli(dataDir, ['hints', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout), { id, text: HINT, scope: { agent: 'main' }, weight: 1, faded: false });
  assert.equal(JSON.parse((await runCli(dataDir, ['hints', 'show', id])).stdout).evidence, 1);
  assert.equal(JSON.parse((await runCli(dataDir, ['hints', 'export', '--json'])).stdout).sources[0], 's#0');
  assert.match((await runCli(dataDir, ['hints', 'rm', id])).stdout, /removed hint/);
  assert.equal((await runCli(dataDir, ['hints', 'rm', id])).code, 1);
  assert.match((await runCli(dataDir, ['hints', 'list'])).stdout, /no hints learned yet/);
});
