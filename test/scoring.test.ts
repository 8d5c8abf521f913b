import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Store, toExportedTurn, type NextState, type SampleRecord } from '../daemon/store.ts';
import { TurnAssembler } from '../daemon/turns.ts';
import { ScoringLoop, type JudgeConfig } from '../daemon/scoring.ts';
import { HintMemory } from '../daemon/hints.ts';
import { createLogger } from '../daemon/log.ts';
import { recipes, type RecipeName } from '../recipes/index.ts';
import { tempDir, until } from './helpers.ts';

const log = createLogger('silent');

/** A FAKE judge endpoint (OpenAI chat completions) answering from a list, once `held` (if given) resolves; records the prompts. */
async function fakeJudge(answers: string[], held?: Promise<void>) {
  const prompts: string[] = [];
  let i = 0;
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const p of req) body += p;
    prompts.push(JSON.stringify(JSON.parse(body).messages));
    await held;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content: answers[i++ % answers.length] } }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, prompts, close: () => server.close() };
}

async function scoredTurn(nextState: NextState, recipe: RecipeName, judge: JudgeConfig, promptTokens = [1, 2, 3]) {
  const store = await Store.open(tempDir());
  const sample: Omit<SampleRecord, 'ordinal' | 'logMark'> = {
    id: 'x',
    sessionKey: 's',
    side: false,
    createdAt: Date.now(),
    model: 'm',
    weightVersion: 'base',
    requestMessages: [{ role: 'user', content: 'run the tests' }],
    promptTokens,
    responseTokens: [4, 5, 6, 7],
    logprobs: [-1, -1, -1, -1],
    text: 'running',
    toolCalls: [],
    finishReason: 'stop',
  };
  await store.recordSample(sample);
  // Write the turn as the assembler would.
  await new TurnAssembler({ store, log }).assembleOnce(Date.now() + 3_600_000);
  const turn = store.turns.get(['s', 0])!;
  await store.turns.put(['s', 0], { ...turn, nextState });
  const loop = new ScoringLoop({ store, log, recipe: recipes[recipe], judge, timeoutMs: 2_000 });
  assert.equal(await loop.scoreOnce(), 1);
  return { store, loop, score: store.scores.get(['s', 0])!, turn: store.turns.get(['s', 0])!, queued: store.trainQueue.get(['s', 0]) === null };
}

const failed: NextState = { toolResults: [{ toolCallId: 'c', toolName: 'exec', exitCode: 2, isError: false, output: 'FAILED' }] };

test('rules judge: exit code 2 gives reward -1 on every token and queues the turn for training', async () => {
  const { store, score, turn, queued, loop } = await scoredTurn(failed, 'binary-rl', { kind: 'rules' });
  assert.equal(score.score, -1);
  assert.equal(score.source, 'rules');
  assert.deepEqual(score.advantages, [-1, -1, -1, -1]);
  assert.deepEqual(score.mask, [1, 1, 1, 1]);
  assert.equal(turn.reward, -1);
  assert.ok(queued);
  assert.equal(toExportedTurn(turn).reward, -1);
  assert.deepEqual(loop.status(), { queueDepth: 0, scored: 1, trainable: 1, judgeFailures: 0, errors: 0 });
  await store.close();
});

test('a reply whose prompt ids the server did not return is scored but not trained on', async () => {
  const { store, score, queued } = await scoredTurn(failed, 'binary-rl', { kind: 'rules' }, []);
  assert.equal(score.score, -1);
  assert.equal(score.advantages, null);
  assert.ok(!queued);
  await store.close();
});

test('a neutral turn is scored but not queued for training', async () => {
  const { store, score, queued } = await scoredTurn({ toolResults: [], none: true }, 'binary-rl', { kind: 'rules' });
  assert.equal(score.score, 0);
  assert.equal(score.advantages, null);
  assert.ok(!queued);
  await store.close();
});

test('a judge endpoint votes; the majority is stored with every vote, garbage is counted', async () => {
  const judge = await fakeJudge(['It went well. \\boxed{1}', 'garbage without a box', 'fine \\boxed{1}']);
  const { store, score, queued } = await scoredTurn({ userMessage: 'ok next', toolResults: [] }, 'binary-rl', { kind: 'endpoint', baseUrl: judge.url, model: 'j' });
  assert.equal(score.source, 'judge');
  assert.equal(score.score, 1);
  assert.deepEqual([...score.votes].sort(), [1, 1, null].sort());
  assert.equal(score.failures, 1);
  assert.ok(queued);
  assert.equal(judge.prompts.length, 3);
  assert.match(judge.prompts[0]!, /run the tests/);
  judge.close();
  await store.close();
});

test('explicit feedback overrides the judge: no judge call is made', async () => {
  const judge = await fakeJudge(['\\boxed{1}']);
  const { store, score } = await scoredTurn({ toolResults: [], feedback: { rating: 'bad' } }, 'binary-rl', { kind: 'endpoint', baseUrl: judge.url, model: 'j' });
  assert.equal(score.score, -1);
  assert.equal(score.source, 'feedback');
  assert.equal(judge.prompts.length, 0);
  judge.close();
  await store.close();
});

test('OPD with an explicit hint but no scoring backend stores the hint and trains nothing', async () => {
  const { store, score, turn, queued } = await scoredTurn({ toolResults: [], feedback: { hint: 'Run npm test with --verbose first.' } }, 'opd', { kind: 'rules' });
  assert.equal(score.hint, 'Run npm test with --verbose first.');
  assert.equal(turn.hint, 'Run npm test with --verbose first.');
  assert.equal(score.advantages, null, 'no teacher logprobs without a backend that scores');
  assert.ok(!queued);
  await store.close();
});

test('feedback that arrives while the judge is voting is not lost: the turn is scored again with it', async () => {
  // The votes are held until the feedback is in, rather than for a fixed time the revision had to beat.
  let release!: () => void;
  const judge = await fakeJudge(['\\boxed{1}'], new Promise((resolve) => (release = resolve)));
  const store = await Store.open(tempDir());
  try {
    await store.recordSample({
      id: 'x', sessionKey: 's', side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
      requestMessages: [{ role: 'user', content: 'q' }], promptTokens: [1], responseTokens: [2, 3], logprobs: [-1, -1],
      text: 'a', toolCalls: [], finishReason: 'stop',
    });
    await new TurnAssembler({ store, log }).assembleOnce(Date.now() + 3_600_000);
    await store.turns.put(['s', 0], { ...store.turns.get(['s', 0])!, nextState: { userMessage: 'ok, next', toolResults: [] } });
    const loop = new ScoringLoop({ store, log, recipe: recipes['binary-rl'], judge: { kind: 'endpoint', baseUrl: judge.url, model: 'j' }, timeoutMs: 5_000 });
    const scoring = loop.scoreOnce();
    // While the votes are out, late feedback changes the turn, as the assembler does.
    await until(() => judge.prompts.length > 0, 'the judge asked');
    const turn = store.turns.get(['s', 0])!;
    await store.atomically(() => store.reviseTurn({ ...turn, nextState: { ...turn.nextState, feedback: { rating: 'bad' } } }));
    release();
    assert.equal(await scoring, 0, 'the stale verdict is not written');
    assert.equal(await loop.scoreOnce(), 1);
    const score = store.scores.get(['s', 0])!;
    assert.deepEqual([score.source, score.score], ['feedback', -1]);
    assert.deepEqual(store.turns.get(['s', 0])!.nextState.feedback, { rating: 'bad' });
    assert.equal(judge.prompts.length, 3, 'the judge was asked once, before the feedback came');
  } finally {
    judge.close();
    await store.close();
  }
});

test('a rating, then a hint, then another rating on one turn: each is scored again, the hint is learned, the latest rating stands', async () => {
  const store = await Store.open(tempDir());
  try {
    const memory = new HintMemory({ store, log });
    const assembler = new TurnAssembler({ store, log });
    const loop = new ScoringLoop({ store, log, recipe: recipes.combined, judge: { kind: 'rules' }, onScored: (turn, score) => memory.onScored(turn, score) });
    let seq = 0;
    const feedback = (e: Record<string, unknown>) => store.appendEvents('c', [{ seq: ++seq, at: seq, sessionKey: 'agent:main:s', runId: 'r1', kind: 'feedback', ...e } as never]);
    await store.appendEvents('c', [{ seq: ++seq, at: seq, sessionKey: 'agent:main:s', kind: 'session.optin' } as never]);
    await store.recordSample({
      id: 'x', sessionKey: 'agent:main:s', runId: 'r1', side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
      requestMessages: [{ role: 'user', content: 'summarise the log' }], promptTokens: [1], responseTokens: [2, 3], logprobs: [-1, -1],
      text: 'a long summary', toolCalls: [], finishReason: 'stop',
    });
    const step = async (e: Record<string, unknown>) => {
      await feedback(e);
      await assembler.assembleOnce();
      assert.equal(await loop.scoreOnce(), 1, `scored again after ${JSON.stringify(e)}`);
      await memory.flushed();
      const score = store.scores.get(['agent:main:s', 0])!;
      return [score.score, score.hint];
    };
    assert.deepEqual(await step({ rating: 'good' }), [1, null]);
    assert.deepEqual(await step({ hint: 'Keep summaries to three lines.' }), [1, 'Keep summaries to three lines.']);
    assert.deepEqual(memory.list().map((h) => [h.text, h.origin]), [['Keep summaries to three lines.', 'feedback']]);
    assert.deepEqual(await step({ rating: 'bad' }), [-1, 'Keep summaries to three lines.']);
    assert.equal(memory.list().length, 1, 'rescoring learns no duplicate');
  } finally {
    await store.close();
  }
});
