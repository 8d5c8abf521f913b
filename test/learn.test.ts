// Proof that the loop learns, short enough for the default suite: bench/learn.ts's simulated user
// (it likes replies that start with a letter and only ever says "thanks!" or "try again") talks
// to a real daemon on a small embedded model, and Binary RL with the rules judge must raise the
// held-out hit rate well above the untrained model's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userReaction } from '../recipes/evidence.ts';
import { APPROVALS, CORRECTIONS, TRAIN_PROMPTS, learn, pleases, type VersionResult } from '../bench/simulated-user.ts';

test('the preference is read from the reply alone', () => {
  for (const reply of ['Hello', 'x9', 'Zz']) assert.ok(pleases(reply), reply);
  for (const reply of ['', ' hello', '9 lives', '\uFFFD', '"quoted"', 'é']) assert.ok(!pleases(reply), reply);
});

test("the rules judge reads the simulated user's reactions as approval and correction", () => {
  for (const request of TRAIN_PROMPTS) {
    for (const reply of APPROVALS) assert.equal(userReaction(reply, request), 'approval', `${JSON.stringify(reply)} to ${JSON.stringify(request)}`);
    for (const reply of CORRECTIONS) assert.equal(userReaction(reply, request), 'correction', `${JSON.stringify(reply)} to ${JSON.stringify(request)}`);
  }
});

// Every sampled reply is seeded, so a run repeats exactly on the same platform. Measured with
// these settings (12 steps; gain = mean hit rate of the last 3 versions − base, 64 held-out
// replies each): seeds 1–6 gained +0.25, +0.23, +0.57, +0.72, +0.55, +0.15 from base rates of
// 0.11–0.19. The test runs seeds 1 and 2 (about 10 s each on 2 idle cores) and asks for less than
// half of what they gained, so a platform whose floating point differs still passes.
const SEEDS = [1, 2];
const MIN_GAIN_PER_SEED = 0.1;
const MIN_MEAN_GAIN = 0.12;

test('Binary RL through the whole daemon raises the hit rate of a hidden preference', { timeout: 120_000 }, async () => {
  const gains: number[] = [];
  for (const seed of SEEDS) {
    const results: VersionResult[] = await learn({
      seed,
      recipe: 'binary-rl',
      steps: 12,
      batchSize: 16,
      lr: 3e-3,
      maxTokens: 4,
      evalSamples: 64,
      model: { dim: 96, layers: 2, heads: 4, context: 256 },
    });
    assert.deepEqual(
      results.map((r) => r.version),
      ['base', ...Array.from({ length: 12 }, (_, i) => `v${String(i + 1).padStart(6, '0')}`)],
      'one version per step, each measured while it served',
    );
    const before = results[0]!.hitRate;
    // The premise: the untrained model hits sometimes (something to reinforce) but far from always.
    assert.ok(before > 0.05 && before < 0.35, `seed ${seed}: base hit rate ${before}`);
    const after = results.slice(-3).reduce((sum, r) => sum + r.hitRate, 0) / 3;
    const curve = results.map((r) => r.hitRate.toFixed(2)).join(' ');
    assert.ok(after - before >= MIN_GAIN_PER_SEED, `seed ${seed}: ${before} → ${after} (${curve})`);
    gains.push(after - before);
  }
  const meanGain = gains.reduce((a, b) => a + b, 0) / gains.length;
  assert.ok(meanGain >= MIN_MEAN_GAIN, `mean gain ${meanGain} over seeds ${SEEDS.join(', ')}`);
});
