// Proof that the loop learns, short enough for the default suite: bench/learn.ts's simulated users
// talk to a real daemon on the embedded model. Binary RL with the rules judge must raise the
// held-out hit rate of a hidden preference on a random base; OPD must raise it on the base that
// reads hints (its teacher is that base reading the user's hint) and must not on a random base,
// whose teacher cannot read the hint: so the OPD test measures the teacher's reading, not noise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userReaction } from '../recipes/evidence.ts';
import { APPROVALS, CORRECTIONS, PERSONAS, TRAIN_PROMPTS, learn, sessionsToRule, type LearnOptions, type LearnResult, type PersonaName } from '../bench/simulated-user.ts';
import { follows } from '../daemon/backends/embedded/corpus.ts';

test("each persona's preference is read from the reply alone", () => {
  const cases: Record<PersonaName, [string[], string[]]> = {
    'letter-first': [['Hello', 'x9', 'Zz'], ['', ' hello', '9 lives', '\uFFFD', '"quoted"', 'é']],
    'no-markdown': [['plain words here', 'a - b, (c)'], ['**bold**', '# title', 'use `code`', 'snake_case', '> quote']],
    'wants-longer': [['x'.repeat(40), 'a full sentence that is long enough, yes'], ['short', 'x'.repeat(39)]],
    'greeting-first': [['Hello, sure', 'Hi! here', 'Hey there'], ['hello', 'Oh, Hi', 'Hiking is fun', 'Helloo']],
  };
  for (const [persona, [good, bad]] of Object.entries(cases) as [PersonaName, [string[], string[]]][]) {
    const { rule } = PERSONAS[persona];
    for (const reply of good) assert.ok(follows(rule, reply), `${persona}: ${JSON.stringify(reply)}`);
    for (const reply of bad) assert.ok(!follows(rule, reply), `${persona}: ${JSON.stringify(reply)}`);
  }
});

test("the rules judge reads the simulated user's reactions as approval and correction", () => {
  for (const request of TRAIN_PROMPTS) {
    for (const reply of APPROVALS) assert.equal(userReaction(reply, request), 'approval', `${JSON.stringify(reply)} to ${JSON.stringify(request)}`);
    for (const reply of CORRECTIONS) assert.equal(userReaction(reply, request), 'correction', `${JSON.stringify(reply)} to ${JSON.stringify(request)}`);
  }
});

test("the paper's metric: the session that completes the first run of 3 passing first replies", () => {
  const [T, F] = [true, false];
  assert.equal(sessionsToRule([T, T, T]), 3);
  assert.equal(sessionsToRule([T, T, F, T, F, T, T, T, F]), 8);
  assert.equal(sessionsToRule([T, T, F, T, T]), null);
  assert.equal(sessionsToRule([]), null);
});

/** Mean hit rate of the last 3 versions minus the base's. */
function gainOf(versions: { hitRate: number }[]): number {
  return versions.slice(-3).reduce((sum, v) => sum + v.hitRate, 0) / 3 - versions[0]!.hitRate;
}

// Every sampled reply is seeded, so a run repeats exactly on the same platform. Measured with
// these settings (12 steps; gain = mean hit rate of the last 3 versions − base, 64 held-out
// replies each): seeds 1–6 gained +0.25, +0.23, +0.57, +0.72, +0.55, +0.15 from base rates of
// 0.11–0.19 (with the earlier one-word prompts). The test runs seeds 1 and 2 and asks for less than
// half of what they gained, so a platform whose floating point differs still passes.
test('Binary RL through the whole daemon raises the hit rate of a hidden preference', { timeout: 180_000 }, async () => {
  const gains: number[] = [];
  for (const seed of [1, 2]) {
    const { versions } = await learn({
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
      versions.map((r) => r.version),
      ['base', ...Array.from({ length: 12 }, (_, i) => `v${String(i + 1).padStart(6, '0')}`)],
      'one version per step, each measured while it served',
    );
    const before = versions[0]!.hitRate;
    // The premise: the untrained model hits sometimes (something to reinforce) but far from always.
    assert.ok(before > 0.05 && before < 0.35, `seed ${seed}: base hit rate ${before}`);
    const curve = versions.map((r) => r.hitRate.toFixed(2)).join(' ');
    assert.ok(gainOf(versions) >= 0.1, `seed ${seed}: ${curve}`);
    gains.push(gainOf(versions));
  }
  assert.ok((gains[0]! + gains[1]!) / 2 >= 0.12, `mean gain ${gains}`);
});

// OPD only: every trainable turn is a corrected reply with the user's hint, and its advantage is
// the teacher − student gap. The same small run on the shipped hint-reading base and on a random
// base of the same shape. Measured (2 shared cores, ~95 s for the three runs): hint-reading base
// seeds 1 and 2, 0.28 → 0.94 both (gains +0.62, +0.60); random base seed 1, 0.03 → 0.09 (+0.06).
// Runs are not bit-exact: the trainer's own poll may start a step before the bench asks, mid-
// session, so which version serves a turn depends on timing (a 5-step run of seed 1 once gained
// +0.20, another +0.56); the thresholds leave room for that.
const OPD: Omit<LearnOptions, 'seed' | 'base'> = {
  recipe: 'opd',
  persona: 'letter-first',
  steps: 6,
  // OPD trains only on corrected turns, so steps come slower as it learns: room to finish them.
  sessions: 100,
  batchSize: 8,
  lr: 3e-3,
  maxTokens: 4,
  evalSamples: 32,
  turnsPerSession: 4,
};
const MIN_OPD_GAIN = 0.2;
/**
 * A random teacher's gap carries no preference, but OPD's turns are all corrected ones, and the
 * gap of a token the student sampled is negative on average (its mean is −KL(student‖teacher)),
 * so even a random teacher pushes corrected replies down a little: a small gain, not none.
 */
const MAX_RANDOM_GAIN = 0.12;

test('OPD raises the hit rate on a base that reads hints, and not on a random base', { timeout: 240_000 }, async () => {
  const show = (r: LearnResult) => r.versions.map((v) => v.hitRate.toFixed(2)).join(' ');
  const run = async (seed: number, base: string) => {
    const result = await learn({ ...OPD, seed, base, ...(base === 'random' && { model: { dim: 64, layers: 2, heads: 4, context: 512 } }) });
    assert.equal(result.versions.length, OPD.steps + 1, `${base} seed ${seed}: every step trained and served (${show(result)})`);
    return result;
  };
  const hints = [await run(1, 'hints'), await run(2, 'hints')];
  const random = await run(1, 'random');
  const gains = hints.map((r) => gainOf(r.versions));
  // Every version of a run after the first trains on replies its predecessor served, so a run's
  // curve is noisy: the mean over two seeds carries the claim, each seed only a floor.
  for (const [i, gain] of gains.entries()) assert.ok(gain >= MIN_OPD_GAIN / 2, `hint-reading base, seed ${i + 1}: ${show(hints[i]!)}`);
  const meanGain = (gains[0]! + gains[1]!) / 2;
  assert.ok(meanGain >= MIN_OPD_GAIN, `hint-reading base: mean gain ${meanGain} (${hints.map(show).join('; ')})`);
  assert.ok(gainOf(random.versions) <= MAX_RANDOM_GAIN, `random base: ${show(random)}`);
  assert.ok(meanGain - gainOf(random.versions) >= MIN_OPD_GAIN, `hint-reading base ${meanGain}; random ${show(random)}`);
});
