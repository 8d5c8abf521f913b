import assert from 'node:assert/strict';
import { test } from 'node:test';
import { policyLoss } from '../daemon/backends/loss.ts';

const clip = { clipLow: 0.2, clipHigh: 0.28, klCoef: 0 };
const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

/** One token with ratio r and advantage a. */
function one(r: number, a: number) {
  return policyLoss([Math.log(r) - 1], [-1], [a], [1], clip);
}

test('unclipped ratio: loss −r·A, gradient −r·A', () => {
  const out = one(1.1, 2);
  close(out.loss, -2.2);
  close(out.dLogp[0], -2.2);
  close(out.clipFraction, 0);
  close(out.meanRatio, 1.1);
});

test('positive advantage, ratio above 1+clipHigh: clipped, no gradient', () => {
  const out = one(1.5, 1);
  close(out.loss, -1.28);
  close(out.dLogp[0], 0);
  close(out.clipFraction, 1);
});

test('negative advantage, ratio above the range: the unclipped term is the min and keeps its gradient', () => {
  const out = one(1.5, -1);
  close(out.loss, 1.5);
  close(out.dLogp[0], 1.5);
  close(out.clipFraction, 0);
});

test('positive advantage, ratio below 1−clipLow: unclipped (pessimistic) term, gradient kept', () => {
  const out = one(0.5, 1);
  close(out.loss, -0.5);
  close(out.dLogp[0], -0.5);
  close(out.clipFraction, 0);
});

test('negative advantage, ratio below 1−clipLow: clipped, no gradient', () => {
  const out = one(0.5, -1);
  close(out.loss, 0.8);
  close(out.dLogp[0], 0);
  close(out.clipFraction, 1);
});

test('token-level mean over masked-in tokens; masked tokens have no loss and no gradient', () => {
  const r = [1.1, 1.5, 0.5, 3];
  const logp = r.map((x) => Math.log(x));
  const out = policyLoss(logp, [0, 0, 0, 0], [2, 1, -1, 100], [1, 1, 1, 0], clip);
  // per token: −2.2, −1.28 (clipped), 0.8 (clipped); the fourth is masked out
  close(out.loss, (-2.2 - 1.28 + 0.8) / 3);
  close(out.dLogp[0], -2.2 / 3);
  close(out.dLogp[1], 0);
  close(out.dLogp[2], 0);
  close(out.dLogp[3], 0);
  close(out.clipFraction, 2 / 3);
  close(out.meanRatio, (1.1 + 1.5 + 0.5) / 3);
});

test('an all-masked batch has zero loss and gradient', () => {
  const out = policyLoss([-1, -2], [-1, -2], [1, 1], [0, 0], clip);
  assert.equal(out.loss, 0);
  assert.deepEqual([...out.dLogp], [0, 0]);
});

test('KL penalty uses the k3 estimator; the reported kl is mean(logp − ref)', () => {
  // r = 1, A = 0: only the KL term. d = ref − logp = −0.5 → k3 = e^−0.5 + 0.5 − 1
  const out = policyLoss([-1], [-1], [0], [1], { ...clip, klCoef: 0.1, refLogp: [-1.5] });
  close(out.loss, 0.1 * (Math.exp(-0.5) + 0.5 - 1));
  close(out.dLogp[0], 0.1 * (1 - Math.exp(-0.5)));
  close(out.kl, 0.5);
});

test('dLogp equals finite differences of the loss', () => {
  const n = 12;
  // Deterministic spread of ratios in and out of the clip range, both advantage signs.
  const old = Array.from({ length: n }, (_, i) => -1 - 0.1 * i);
  const logp = old.map((o, i) => o + Math.log(0.5 + 0.09 * i));
  const adv = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1.5 : 0.7 + 0.1 * i));
  const mask = Array.from({ length: n }, (_, i) => (i % 5 === 4 ? 0 : 1));
  const ref = old.map((o, i) => o + 0.3 * Math.sin(i));
  const opts = { ...clip, klCoef: 0.05, refLogp: ref };
  const { dLogp } = policyLoss(logp, old, adv, mask, opts);
  const eps = 1e-6;
  let nonzero = 0;
  for (let t = 0; t < n; t++) {
    const up = logp.slice();
    const down = logp.slice();
    up[t] += eps;
    down[t] -= eps;
    const fd = (policyLoss(up, old, adv, mask, opts).loss - policyLoss(down, old, adv, mask, opts).loss) / (2 * eps);
    close(dLogp[t], fd, 1e-7);
    if (Math.abs(dLogp[t]) > 1e-3) nonzero++;
  }
  assert.ok(nonzero >= 6, 'the check covers tokens with a real gradient');
});

test('mismatched lengths and a KL without reference are errors', () => {
  assert.throws(() => policyLoss([0, 0], [0], [1, 1], [1, 1], clip), /oldLogp has 1 entries/);
  assert.throws(() => policyLoss([0], [0], [1], [1], { ...clip, klCoef: 0.1 }), /needs refLogp/);
});
