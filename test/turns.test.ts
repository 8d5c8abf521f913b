import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Store, type SampleRecord } from '../daemon/store.ts';
import { TurnAssembler, hintsOf } from '../daemon/turns.ts';
import { createLogger } from '../daemon/log.ts';
import type { Event } from '../protocol/index.ts';
import { tempDir } from './helpers.ts';

const log = createLogger('silent');
let seq = 0;
let clock = 1_000;
const ev = (e: Record<string, unknown> & { kind: Event['kind'] }): Event => ({ seq: ++seq, at: ++clock, sessionKey: 's', ...e }) as Event;

function sample(id: string, extra: Partial<SampleRecord> = {}): Omit<SampleRecord, 'ordinal' | 'logMark'> {
  return {
    id,
    sessionKey: 's',
    side: false,
    createdAt: Date.now(),
    model: 'm',
    weightVersion: 'base',
    requestMessages: [{ role: 'user', content: 'do it' }],
    promptTokens: [1, 2],
    responseTokens: [3, 4],
    logprobs: [-0.1, -0.2],
    text: `reply ${id}`,
    toolCalls: [],
    finishReason: 'stop',
    ...extra,
  };
}

async function setup() {
  seq = 0;
  const dir = tempDir();
  const store = await Store.open(dir);
  await store.appendEvents('c', [ev({ kind: 'session.optin' })]);
  const turns: string[] = [];
  const assembler = new TurnAssembler({ store, log, onTurn: (t) => turns.push(t.sampleId) });
  return { dir, store, assembler, turns };
}

test('a tool-calling response gets ALL its tool results as next state, not only the last', async () => {
  const { store, assembler } = await setup();
  await store.appendEvents('c', [ev({ kind: 'model.call', callId: 'r1:model:1', runId: 'r1', provider: 'clawrl', model: 'm', side: false })]);
  await store.recordSample(
    sample('a', {
      callId: 'r1:model:1',
      runId: 'r1',
      finishReason: 'tool_calls',
      toolCalls: [
        { id: 'call_1', name: 'exec', arguments: '{"command":"false"}' },
        { id: 'call_2', name: 'read', arguments: '{}' },
      ],
    }),
  );
  const read = ev({ kind: 'tool.result', toolCallId: 'call_2', toolName: 'read', output: 'ok', isError: false, runId: 'r1' });
  await store.appendEvents('c', [read]);
  assert.equal(await assembler.assembleOnce(), 0, 'waits for the second result');
  const exec = ev({ kind: 'tool.result', toolCallId: 'call_1', toolName: 'exec', output: 'failed', isError: true, exitCode: 2, runId: 'r1', durationMs: 40 });
  await store.appendEvents('c', [exec]);
  assert.equal(await assembler.assembleOnce(), 1);
  const turn = store.turns.get(['s', 0])!;
  // In call order; when each call ran is kept where the plugin knows it.
  assert.deepEqual(turn.nextState.toolResults, [
    { toolCallId: 'call_1', toolName: 'exec', exitCode: 2, isError: true, output: 'failed', startedAt: exec.at - 40, endedAt: exec.at },
    { toolCallId: 'call_2', toolName: 'read', isError: false, output: 'ok', endedAt: read.at },
  ]);
  assert.equal(store.unscored.get(['s', 0]), null);
  assert.equal(await assembler.assembleOnce(), 0, 'never twice');
  await store.close();
});

test("a click's screenshot: one taken beside it in the same response does not count; the run's next one started after it does", async () => {
  const { store, assembler } = await setup();
  const browser = (id: string, args: object) => ({ id, name: 'browser', arguments: JSON.stringify(args) });
  const screen = (comparedTo: string) => ({ width: 800, height: 600, changedShare: 0, hashDistance: 0, comparedTo });
  // Response 1: a click and a screenshot, run at once (OpenClaw's browser tool is not sequential).
  await store.appendEvents('c', [ev({ kind: 'model.call', callId: 'r1:model:1', runId: 'r1', provider: 'clawrl', model: 'm', side: false })]);
  await store.recordSample(sample('a', { callId: 'r1:model:1', runId: 'r1', finishReason: 'tool_calls', toolCalls: [browser('click', { action: 'act', kind: 'click', ref: 'e1' }), browser('beside', { action: 'screenshot' })] }));
  clock += 100;
  const beside = ev({ kind: 'tool.result', toolCallId: 'beside', toolName: 'browser', output: 'shot', isError: false, runId: 'r1', durationMs: 90, screen: screen('before') });
  const click = ev({ kind: 'tool.result', toolCallId: 'click', toolName: 'browser', output: 'clicked', isError: false, runId: 'r1', durationMs: 95 });
  await store.appendEvents('c', [beside, click]);
  assert.equal(await assembler.assembleOnce(), 0, 'all results are in, but no screenshot is known to follow the click: it waits for one');
  // Response 2: the screenshot the model asks for next.
  await store.appendEvents('c', [ev({ kind: 'model.call', callId: 'r1:model:2', runId: 'r1', provider: 'clawrl', model: 'm', side: false })]);
  await store.recordSample(sample('b', { callId: 'r1:model:2', runId: 'r1', finishReason: 'tool_calls', toolCalls: [browser('next', { action: 'screenshot' })] }));
  clock += 50;
  const next = ev({ kind: 'tool.result', toolCallId: 'next', toolName: 'browser', output: 'shot', isError: false, runId: 'r1', durationMs: 20, screen: screen('beside') });
  await store.appendEvents('c', [next]);
  assert.equal(await assembler.assembleOnce(), 2);
  const clicked = store.turns.get(['s', 0])!;
  assert.deepEqual(clicked.nextState.screenAfter, { toolCallId: 'next', toolName: 'browser', isError: false, output: 'shot', screen: screen('beside'), startedAt: next.at - 20, endedAt: next.at });
  assert.equal(store.turns.get(['s', 1])!.nextState.screenAfter, undefined, 'a screenshot is no screen action');

  // A run that ends with no screenshot after the click: the turn closes once the grace period is over, without one.
  await store.appendEvents('c', [ev({ kind: 'model.call', callId: 'r2:model:1', runId: 'r2', provider: 'clawrl', model: 'm', side: false })]);
  await store.recordSample(sample('c', { callId: 'r2:model:1', runId: 'r2', finishReason: 'tool_calls', toolCalls: [browser('click2', { action: 'act', kind: 'click', ref: 'e2' })] }));
  await store.appendEvents('c', [ev({ kind: 'tool.result', toolCallId: 'click2', toolName: 'browser', output: 'clicked', isError: false, runId: 'r2', durationMs: 5 }), ev({ kind: 'run.end', runId: 'r2', success: true })]);
  assert.equal(await assembler.assembleOnce(), 0);
  assert.equal(await assembler.assembleOnce(Date.now() + 6_000), 1);
  assert.equal(store.turns.get(['s', 2])!.nextState.screenAfter, undefined);
  await store.close();
});

test('a pass reads only the sessions that changed, and a session with nothing new again only once time can decide for it', async () => {
  const { store, assembler } = await setup();
  await store.appendEvents('c', [ev({ kind: 'session.optin', sessionKey: 't' }), ev({ kind: 'session.optin', sessionKey: 'u' })]);
  await store.recordSample(sample('s1'));
  await store.recordSample(sample('t1', { sessionKey: 't' }));
  // u's response called a tool and its run ended without the result: decided when the grace period is over.
  await store.recordSample(sample('u1', { sessionKey: 'u', runId: 'ru', finishReason: 'tool_calls', toolCalls: [{ id: 'call_u', name: 'exec', arguments: '{}' }] }));
  await store.appendEvents('c', [ev({ kind: 'run.end', sessionKey: 'u', runId: 'ru', success: true })]);
  const read: string[] = [];
  const sessionEventsOf = store.sessionEventsOf.bind(store);
  store.sessionEventsOf = (sessionKey, opts) => (read.push(sessionKey), sessionEventsOf(sessionKey, opts));
  const now = Date.now();
  assert.equal(await assembler.assembleOnce(now), 0);
  assert.deepEqual(read.splice(0).sort(), ['s', 't', 'u']);
  assert.equal(await assembler.assembleOnce(now + 10), 0);
  assert.deepEqual(read.splice(0), [], 'nothing new: not read again');
  await store.appendEvents('c', [ev({ kind: 'user.message', sessionKey: 't', content: 'next' })]);
  assert.equal(await assembler.assembleOnce(now + 20), 1);
  assert.deepEqual(read.splice(0), ['t']);
  await store.recordSample(sample('s2'));
  assert.equal(await assembler.assembleOnce(now + 30), 0);
  assert.deepEqual(read.splice(0), ['s'], 'a sample opened');
  // Replies waiting for the user's next message are not read again before they could go idle.
  assert.equal(await assembler.assembleOnce(now + 3_000), 0);
  assert.deepEqual(read.splice(0), []);
  assert.equal(await assembler.assembleOnce(now + 6_000), 1);
  assert.deepEqual(read.splice(0), ['u'], 'the grace period after its run ended is over');
  assert.equal(store.turns.get(['u', 0])!.nextState.none, true);
  // A restarted daemon's assembler finds the sessions with open samples in the store.
  const restarted = new TurnAssembler({ store, log });
  assert.equal(await restarted.assembleOnce(now + 6_010), 0);
  assert.deepEqual(read.splice(0), ['s']);
  assert.equal(await assembler.assembleOnce(now + 11 * 60_000), 2);
  assert.deepEqual(read.splice(0), ['s']);
  assert.deepEqual([...store.internalTables().openBySession.getKeys()], [], 'the index by session lost the closed samples');
  await store.close();
});

test('a text reply takes the next user message, not the one that prompted it', async () => {
  const { store, assembler } = await setup();
  await store.appendEvents('c', [
    ev({ kind: 'user.message', content: 'first request' }),
    ev({ kind: 'model.call', callId: 'r1:model:1', runId: 'r1', provider: 'clawrl', model: 'm', side: false }),
  ]);
  await store.recordSample(sample('a', { callId: 'r1:model:1', runId: 'r1' }));
  await store.appendEvents('c', [ev({ kind: 'run.end', runId: 'r1', success: true })]);
  assert.equal(await assembler.assembleOnce(), 0);
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'no, that is wrong' })]);
  assert.equal(await assembler.assembleOnce(), 1);
  assert.equal(store.turns.get(['s', 0])!.nextState.userMessage, 'no, that is wrong');
  await store.close();
});

test('without a model.call event the order of arrival decides, after a settle time when the call was named', async () => {
  const { store, assembler } = await setup();
  await store.recordSample(sample('a', { callId: 'r9:model:1' }));
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'late event of the same run?' })]);
  assert.equal(await assembler.assembleOnce(), 0, 'waits for the model.call event');
  assert.equal(await assembler.assembleOnce(Date.now() + 6_000), 1);
  await store.recordSample(sample('b'));
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'next' })]);
  assert.equal(await assembler.assembleOnce(), 1);
  assert.equal(store.turns.get(['s', 1])!.nextState.userMessage, 'next');
  await store.close();
});

test('feedback, session end and idle make turns; side turns never do', async () => {
  const { store, assembler } = await setup();
  await store.recordSample(sample('side', { side: true }));
  await store.recordSample(sample('fb'));
  await store.appendEvents('c', [ev({ kind: 'feedback', rating: 'bad', hint: 'use ls -la instead' })]);
  await store.recordSample(sample('ended'));
  await store.appendEvents('c', [ev({ kind: 'session.end', reason: 'reset' })]);
  await store.recordSample(sample('idle'));
  assert.equal(await assembler.assembleOnce(), 2);
  assert.deepEqual(store.turns.get(['s', 1])!.nextState, { toolResults: [], feedback: { rating: 'bad', hint: 'use ls -la instead' } });
  assert.deepEqual(store.turns.get(['s', 2])!.nextState, { toolResults: [], none: true });
  assert.equal(await assembler.assembleOnce(Date.now() + 11 * 60_000), 1);
  assert.deepEqual(store.turns.get(['s', 3])!.nextState, { toolResults: [], none: true });
  assert.equal(store.turns.get(['s', 0]), undefined, 'side turn');
  await store.close();
});

test('opting out ends a reply with no next state: what the user says while out is not captured, so what comes after opting in again is not its next state', async () => {
  const { store, assembler } = await setup();
  await store.recordSample(sample('before'));
  await store.appendEvents('c', [ev({ kind: 'session.optout' }), ev({ kind: 'session.optin' }), ev({ kind: 'user.message', content: 'back on' })]);
  assert.equal(await assembler.assembleOnce(), 1);
  assert.deepEqual(store.turns.get(['s', 0])!.nextState, { toolResults: [], none: true });
  await store.close();
});

test('feedback after a turn was made attaches to it and queues it for scoring again', async () => {
  const { store, assembler } = await setup();
  await store.recordSample(sample('a'));
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'thanks' })]);
  assert.equal(await assembler.assembleOnce(), 1);
  await store.unscored.remove(['s', 0]);
  await store.appendEvents('c', [ev({ kind: 'feedback', rating: 'good' })]);
  await assembler.assembleOnce();
  const turn = store.turns.get(['s', 0])!;
  assert.deepEqual(turn.nextState, { userMessage: 'thanks', toolResults: [], feedback: { rating: 'good' } });
  assert.equal(store.unscored.get(['s', 0]), null);
  await store.close();
});

test('every feedback on a turn counts: the latest rating wins, hints add up, each change queues it for scoring again', async () => {
  const { store, assembler, turns } = await setup();
  await store.recordSample(sample('a', { runId: 'r1' }));
  // Rated while the reply is still open: the rating is its next state.
  await store.appendEvents('c', [ev({ kind: 'feedback', rating: 'good', runId: 'r1' })]);
  assert.equal(await assembler.assembleOnce(), 1);
  assert.deepEqual(store.turns.get(['s', 0])!.nextState.feedback, { rating: 'good' });
  const changes: [Record<string, unknown>, unknown][] = [
    [{ hint: 'Say it shorter.' }, { rating: 'good', hint: 'Say it shorter.' }],
    [{ rating: 'bad' }, { rating: 'bad', hint: 'Say it shorter.' }],
    [{ hint: 'Cite the file.' }, { rating: 'bad', hint: 'Say it shorter.\n\nCite the file.' }],
    [{ rating: 'good' }, { rating: 'good', hint: 'Say it shorter.\n\nCite the file.' }],
  ];
  for (const [feedback, expected] of changes) {
    await store.unscored.remove(['s', 0]);
    await store.appendEvents('c', [ev({ kind: 'feedback', runId: 'r1', ...feedback })]);
    await assembler.assembleOnce();
    assert.deepEqual(store.turns.get(['s', 0])!.nextState.feedback, expected, JSON.stringify(feedback));
    assert.equal(store.unscored.get(['s', 0]), null, 'queued for scoring again');
  }
  // The same hint again changes nothing and queues nothing; two in one pass both count.
  await store.unscored.remove(['s', 0]);
  await store.appendEvents('c', [ev({ kind: 'feedback', runId: 'r1', hint: 'Cite the file.' })]);
  await assembler.assembleOnce();
  assert.equal(store.unscored.get(['s', 0]), undefined);
  await store.appendEvents('c', [ev({ kind: 'feedback', runId: 'r1', rating: 'bad' }), ev({ kind: 'feedback', runId: 'r1', hint: 'Run the tests.' })]);
  await assembler.assembleOnce();
  assert.deepEqual(store.turns.get(['s', 0])!.nextState.feedback, { rating: 'bad', hint: 'Say it shorter.\n\nCite the file.\n\nRun the tests.' });
  assert.deepEqual(hintsOf(store.turns.get(['s', 0])!.nextState.feedback), ['Say it shorter.', 'Cite the file.', 'Run the tests.']);
  assert.deepEqual(turns, ['a', 'a', 'a', 'a', 'a', 'a'], 'one onTurn per change (the first made the turn)');
  await store.close();
});

test('restart in the middle of assembly loses nothing and duplicates nothing', async () => {
  const { dir, store, assembler } = await setup();
  for (const id of ['a', 'b', 'c']) await store.recordSample(sample(id, { toolCalls: [{ id: `call_${id}`, name: 'exec', arguments: '{}' }], finishReason: 'tool_calls' }));
  await store.appendEvents('c', [ev({ kind: 'tool.result', toolCallId: 'call_a', toolName: 'exec', output: '', isError: false, exitCode: 0 })]);
  assert.equal(await assembler.assembleOnce(), 1);
  await store.close();

  const reopened = await Store.open(dir);
  const again = new TurnAssembler({ store: reopened, log });
  await reopened.appendEvents('c', [
    ev({ kind: 'tool.result', toolCallId: 'call_b', toolName: 'exec', output: '', isError: false, exitCode: 0 }),
    ev({ kind: 'tool.result', toolCallId: 'call_c', toolName: 'exec', output: '', isError: false, exitCode: 1 }),
  ]);
  // Two passes racing, as two nudges would: each sample becomes one turn.
  const [x, y] = await Promise.all([again.assembleOnce(), again.assembleOnce()]);
  assert.equal(x + y, 2);
  assert.deepEqual([...reopened.turnsOf('s')].map((t) => [t.turnIndex, t.nextState.toolResults[0]!.exitCode]), [[0, 0], [1, 0], [2, 1]]);
  assert.equal([...reopened.openSamples.getKeys()].length, 0);
  await reopened.close();
});

test('late feedback naming its run goes to that run, even if it arrives after a later response', async () => {
  const { store, assembler } = await setup();
  await store.recordSample(sample('a', { runId: 'r1' }));
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'next request' })]);
  await store.recordSample(sample('b', { runId: 'r2' }));
  await store.appendEvents('c', [ev({ kind: 'user.message', content: 'and another' })]);
  assert.equal(await assembler.assembleOnce(), 2);
  await store.appendEvents('c', [ev({ kind: 'feedback', rating: 'bad', runId: 'r1' })]);
  await assembler.assembleOnce();
  assert.deepEqual(store.turns.get(['s', 0])!.nextState.feedback, { rating: 'bad' });
  assert.equal(store.turns.get(['s', 1])!.nextState.feedback, undefined);
  await store.close();
});

test('a tool result stored before its sample counts; an earlier run\'s with the same call id never does', async () => {
  const { store, assembler } = await setup();
  // An earlier run whose tool call had the same id (providers that number calls reuse them), with
  // a sample still open (waiting for another result), so assembly reads from that run on.
  await store.appendEvents('c', [ev({ kind: 'user.message', runId: 'r1', content: 'first' })]);
  await store.recordSample(sample('a', { runId: 'r1', finishReason: 'tool_calls', toolCalls: [{ id: 'call_0', name: 'exec', arguments: '{}' }, { id: 'call_9', name: 'exec', arguments: '{}' }] }));
  await store.appendEvents('c', [ev({ kind: 'tool.result', runId: 'r1', toolCallId: 'call_0', toolName: 'exec', output: 'from r1', isError: false })]);
  // Run r2: its tool result is stored before the daemon has recorded the sample that called it.
  await store.appendEvents('c', [
    ev({ kind: 'user.message', runId: 'r2', content: 'second' }),
    ev({ kind: 'model.call', runId: 'r2', callId: 'r2:model:1', provider: 'clawrl', model: 'm', side: false }),
    ev({ kind: 'tool.result', runId: 'r2', toolCallId: 'call_0', toolName: 'exec', output: 'from r2', isError: false }),
  ]);
  await store.recordSample(sample('b', { runId: 'r2', callId: 'r2:model:1', finishReason: 'tool_calls', toolCalls: [{ id: 'call_0', name: 'exec', arguments: '{}' }] }));
  assert.equal(await assembler.assembleOnce(), 1);
  assert.deepEqual(store.turns.get(['s', 1])!.nextState.toolResults.map((r) => r.output), ['from r2']);
  assert.ok(store.openSamples.get('a'), 'r1\'s sample still waits for call_9');
  await store.close();
});

test("two responses of one run whose calls share an id (a provider numbering each response's calls) each get their own result", async () => {
  const { store, assembler } = await setup();
  const call = (n: number) => ev({ kind: 'model.call', runId: 'r1', callId: `r1:model:${n}`, provider: 'clawrl', model: 'm', side: false });
  const result = (output: string, exitCode: number) => ev({ kind: 'tool.result', runId: 'r1', toolCallId: 'functions.exec:0', toolName: 'exec', output, isError: exitCode !== 0, exitCode });
  const calling = (id: string, n: number) => sample(id, { runId: 'r1', callId: `r1:model:${n}`, finishReason: 'tool_calls', toolCalls: [{ id: 'functions.exec:0', name: 'exec', arguments: '{}' }] });
  await store.appendEvents('c', [ev({ kind: 'user.message', runId: 'r1', content: 'build it' }), call(1)]);
  await store.recordSample(calling('a', 1));
  await store.appendEvents('c', [result('a.txt b.txt', 0), call(2)]);
  await store.recordSample(calling('b', 2));
  await store.appendEvents('c', [result('make: *** [test] Error 2', 2)]);
  assert.equal(await assembler.assembleOnce(), 2);
  assert.deepEqual(
    [0, 1].map((i) => store.turns.get(['s', i])!.nextState.toolResults.map((r) => [r.output, r.exitCode])),
    [[['a.txt b.txt', 0]], [['make: *** [test] Error 2', 2]]],
  );
  await store.close();
});

test('the late-feedback cursor is saved as the log grows, so a restarted daemon does not reread the log', async () => {
  const { store, assembler } = await setup();
  await store.appendEvents('c', Array.from({ length: 100 }, (_, i) => ev({ kind: 'user.message', runId: `r${i}`, content: 'm' })));
  await assembler.assembleOnce();
  assert.equal(store.meta.get('feedbackCursor'), undefined, 'not written for every pass');
  await store.appendEvents('c', Array.from({ length: 10_000 }, (_, i) => ev({ kind: 'user.message', runId: `q${i}`, content: 'm' })));
  await assembler.assembleOnce();
  assert.equal(store.meta.get('feedbackCursor'), store.eventLogPosition());
  await store.close();
});

test('a sample\'s model.call is found however early it was stored, so its run\'s own late prompt is not its next state', async () => {
  const { store, assembler } = await setup();
  // The call event carries no run id (so the run index does not know it), and other sessions'
  // events move the log on before the daemon records the sample.
  await store.appendEvents('c', [
    ev({ kind: 'model.call', callId: 'r5:model:1', provider: 'clawrl', model: 'm', side: false }),
    ev({ kind: 'session.optin', sessionKey: 'x' }),
    ev({ kind: 'user.message', sessionKey: 'x', runId: 'rx', content: 'elsewhere' }),
  ]);
  await store.recordSample(sample('e', { runId: 'r5', callId: 'r5:model:1' }));
  // The run's own prompt arrives late (from the plugin's spool): it happened before the call.
  await store.appendEvents('c', [ev({ kind: 'user.message', runId: 'r5', content: 'the prompt itself', at: 1 })]);
  const afterSettling = Date.now() + 6_000;
  assert.equal(await assembler.assembleOnce(afterSettling), 0);
  await store.appendEvents('c', [ev({ kind: 'user.message', runId: 'r6', content: 'the real reply' })]);
  assert.equal(await assembler.assembleOnce(afterSettling), 1);
  assert.equal(store.turns.get(['s', 0])!.nextState.userMessage, 'the real reply');
  await store.close();
});

test("the tool grace after a run's end counts in the daemon's time from when it met the end, whatever the plugin's clock says", async () => {
  const { store, assembler } = await setup();
  const toolCalls = [{ id: 'slow', name: 'exec', arguments: '{}' }];
  // Plugin clock behind (the test's event clock is at 1970): a run that ended a minute after its
  // response was served still waits the grace for a result in flight.
  const served = Date.now();
  await store.recordSample(sample('behind', { runId: 'r1', finishReason: 'tool_calls', toolCalls, createdAt: served }));
  await store.appendEvents('c', [ev({ kind: 'run.end', runId: 'r1', success: true })]);
  assert.equal(await assembler.assembleOnce(served + 60_000), 0, 'waits the grace from when the end was met');
  await store.appendEvents('c', [ev({ kind: 'tool.result', toolCallId: 'slow', toolName: 'exec', output: 'done at last', isError: false, runId: 'r1' })]);
  assert.equal(await assembler.assembleOnce(served + 61_000), 1);
  assert.deepEqual(store.turns.get(['s', 0])?.nextState.toolResults.map((r) => r.output), ['done at last']);

  // Plugin clock an hour ahead: the grace still ends 5 s after the end was met, not an hour (or
  // the idle time) later.
  await store.recordSample(sample('ahead', { runId: 'r2', finishReason: 'tool_calls', toolCalls: [{ id: 'lost', name: 'exec', arguments: '{}' }], createdAt: served }));
  await store.appendEvents('c', [{ ...ev({ kind: 'run.end', runId: 'r2', success: true }), at: served + 3_600_000 } as Event]);
  assert.equal(await assembler.assembleOnce(served + 62_000), 0);
  assert.equal(await assembler.assembleOnce(served + 67_001), 1);
  assert.deepEqual(store.turns.get(['s', 1])?.nextState, { toolResults: [], none: true });
  await store.close();
});
