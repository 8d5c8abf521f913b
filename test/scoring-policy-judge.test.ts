// The whole scoring path with the embedded policy as its own judge: a random toy model answers
// garbage, which must be counted and fall back to the rules, never crash, and be stored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Store } from '../daemon/store.ts';
import { TurnAssembler } from '../daemon/turns.ts';
import { ScoringLoop } from '../daemon/scoring.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { recipes } from '../recipes/index.ts';
import { optIn, tempDir } from './helpers.ts';

test('the embedded policy judging itself: votes stored, failures counted, exit code 2 still scores -1', async () => {
  const log = createLogger('silent');
  const store = await Store.open(tempDir());
  const backend = await EmbeddedBackend.create({ model: { dim: 32, layers: 1, heads: 2, context: 256, seed: 2 } });
  try {
    await store.appendEvents('c', [optIn(1, 's')]);
    const served = await backend.generate({ messages: [{ role: 'user', content: 'run the tests' }], sampling: { temperature: 1, topP: 1, maxTokens: 8, stop: [], topLogprobs: 0 } });
    await store.recordSample({
      id: 'x',
      sessionKey: 's',
      side: false,
      createdAt: Date.now(),
      model: 'clawrl-embedded',
      weightVersion: served.weightVersion,
      requestMessages: [{ role: 'user', content: 'run the tests' }],
      promptTokens: served.promptTokens,
      responseTokens: served.responseTokens,
      logprobs: served.logprobs,
      text: served.text,
      toolCalls: [{ id: 'call_t', name: 'exec', arguments: '{"command":"npm test"}' }],
      finishReason: 'tool_calls',
    });
    await store.appendEvents('c', [{ kind: 'tool.result', seq: 2, at: 2, sessionKey: 's', toolCallId: 'call_t', toolName: 'exec', params: { command: 'npm test' }, output: 'FAIL', isError: false, exitCode: 2 }]);
    assert.equal(await new TurnAssembler({ store, log }).assembleOnce(), 1);

    const loop = new ScoringLoop({ store, log, recipe: recipes['binary-rl'], backend, judge: { kind: 'policy' }, recipeOptions: { m: 3 }, timeoutMs: 30_000 });
    assert.equal(await loop.scoreOnce(), 1);
    const score = store.scores.get(['s', 0])!;
    assert.equal(score.votes.length, 3, 'three judge calls were made and recorded');
    assert.equal(score.failures, score.votes.filter((v) => v === null).length);
    // A random model rarely writes a valid box; whatever it wrote, exit code 2 keeps the turn bad
    // unless it truly voted otherwise.
    if (score.source === 'rules') assert.equal(score.score, -1);
    else assert.equal(score.source, 'judge');
    assert.equal(loop.status().errors, 0);
  } finally {
    await backend.close();
    await store.close();
  }
});
