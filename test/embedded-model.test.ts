import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdamW, clipGradNorm } from '../daemon/backends/embedded/adamw.ts';
import { BaseGrads, LORA_TARGETS, Lora, Model, type ModelConfig, Rng } from '../daemon/backends/embedded/model.ts';
import { sample } from '../daemon/backends/embedded/sample.ts';

const tiny: ModelConfig = { vocab: 11, context: 16, dim: 8, layers: 2, heads: 2, mlpRatio: 2, seed: 7 };

/** A LoRA with B non-zero too, so every adapter path carries signal (a fresh one has B = 0). */
function randomLora(cfg: ModelConfig, float64: boolean): Lora {
  const lora = new Lora(cfg, 3, 4, float64); // odd rank: exercises the odd-width matmul path
  const rng = new Rng(99);
  for (let i = 0; i < lora.params.length; i++) lora.params[i] = rng.normal() * 0.5;
  return lora;
}

test('finite-difference check of the backward pass for every LoRA parameter (float64)', () => {
  const model = new Model(tiny, true);
  const lora = randomLora(tiny, true);
  const prompt = [1, 5, 2, 9, 3, 0];
  const response = [4, 4, 10, 7, 1, 6, 2];
  const c = response.map((_, i) => Math.cos(1.3 * i + 0.4)); // L = Σ c_i · logp_i
  const loss = () => model.score(prompt, response, lora).reduce((s, lp, i) => s + c[i] * lp, 0);
  lora.grads.fill(0);
  model.accumulateGradients(prompt, response, lora, () => c);
  const eps = 1e-5;
  let worst = 0; // max of |fd − grad| / (1e-7 + 1e-5·|fd|): ≤ 1 passes; a wrong op gives errors ~|grad| ≫ 1e-5
  for (let i = 0; i < lora.params.length; i++) {
    const p = lora.params[i];
    lora.params[i] = p + eps;
    const up = loss();
    lora.params[i] = p - eps;
    const down = loss();
    lora.params[i] = p;
    const fd = (up - down) / (2 * eps);
    worst = Math.max(worst, Math.abs(fd - lora.grads[i]) / (1e-7 + 1e-5 * Math.abs(fd)));
  }
  assert.ok(worst <= 1, `worst scaled error ${worst}`);
  // Every adapted linear of the first layer got gradient: it flowed back through every op above.
  for (const t of LORA_TARGETS) {
    const { ga, gb } = lora.layers[0][t];
    assert.ok(ga.some((g) => Math.abs(g) > 1e-8) && gb.some((g) => Math.abs(g) > 1e-8), `${t} has gradient`);
  }
});

test('init is deterministic from the seed', () => {
  const a = new Model(tiny);
  const b = new Model(tiny);
  const c = new Model({ ...tiny, seed: 8 });
  assert.deepEqual(a.blocks[1].wdown, b.blocks[1].wdown);
  assert.deepEqual(a.wte, b.wte);
  assert.notDeepEqual(a.wte, c.wte);
  assert.deepEqual(Lora.init(tiny, 2, 4, 5).params, Lora.init(tiny, 2, 4, 5).params);
});

test('KV-cache forward (prefill, then one token at a time) equals the full forward', () => {
  const model = new Model(tiny);
  const lora = randomLora(tiny, false);
  const tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
  const full = model.forward(tokens, 0, model.newCache(), lora);
  const cache = model.newCache();
  const rows = [model.forward(tokens.slice(0, 4), 0, cache, lora)];
  for (let t = 4; t < tokens.length; t++) rows.push(model.forward([tokens[t]], t, cache, lora));
  let worst = 0;
  for (let t = 0; t < tokens.length; t++) {
    const step = t < 4 ? model.logits(rows[0], t) : model.logits(rows[t - 3], 0);
    const ref = model.logits(full, t);
    for (let v = 0; v < tiny.vocab; v++) worst = Math.max(worst, Math.abs(step[v] - ref[v]));
  }
  assert.ok(worst < 1e-5, `max logit difference ${worst}`);
});

test('sampled logprobs equal score() of the same tokens; sampling is seedable', () => {
  const cfg: ModelConfig = { ...tiny, vocab: 263, context: 64, dim: 16 };
  const model = new Model(cfg);
  const lora = randomLora(cfg, false);
  const prompt = [72, 105, 258];
  const params = { temperature: 0.8, topP: 0.9, maxTokens: 30, stop: [], topLogprobs: 3, seed: 11 };
  const out = sample(model, lora, prompt, params);
  assert.ok(out.responseTokens.length > 0);
  const scored = model.score(prompt, out.responseTokens, lora);
  for (let i = 0; i < scored.length; i++) assert.ok(Math.abs(scored[i] - out.logprobs[i]) < 1e-4, `token ${i}`);
  assert.deepEqual(sample(model, lora, prompt, params).responseTokens, out.responseTokens);
  assert.notDeepEqual(sample(model, lora, prompt, { ...params, seed: 12 }).responseTokens, out.responseTokens);
  // top alternatives are sorted and the best is at least the sampled token's logprob
  const top = out.tokens[0].top!;
  assert.equal(top.length, 3);
  assert.ok(top[0].logprob >= top[1].logprob && top[1].logprob >= top[2].logprob);
  assert.ok(top[0].logprob >= out.logprobs[0]);
});

test('a reply that reaches the end of the context stops with length', () => {
  const model = new Model(tiny);
  const out = sample(model, null, [1, 2, 3], { temperature: 1, topP: 1, maxTokens: 100, stop: [], topLogprobs: 0, seed: 1 });
  // tiny's vocab has no turn-ending token, so only the context stops it: 16 − 3 + 1 tokens
  assert.equal(out.responseTokens.length, 14);
  assert.equal(out.finishReason, 'length');
  assert.throws(() => model.score([1, 2, 3], new Array(17).fill(1), null), /exceeds the context/);
});

test('AdamW moves against the gradient; clipGradNorm caps the norm and reports it', () => {
  const params = new Float32Array([1, -1]);
  const grads = new Float32Array([3, -4]);
  assert.equal(clipGradNorm(grads, 1), 5);
  assert.ok(Math.abs(Math.hypot(grads[0], grads[1]) - 1) < 1e-6);
  new AdamW(2).step(params, grads, 0.1, 0);
  // first Adam step moves each parameter by lr against the sign of its gradient
  assert.ok(Math.abs(params[0] - 0.9) < 1e-6 && Math.abs(params[1] + 0.9) < 1e-6);
});

test('finite-difference check of the pretraining backward pass for every base weight (float64)', () => {
  const model = new Model(tiny, true);
  const grads = new BaseGrads(model);
  const prompt = [1, 5, 2, 9];
  const response = [4, 10, 7, 1, 6];
  const c = response.map((_, i) => Math.sin(0.7 * i + 0.3)); // L = Σ c_i · logp_i
  const loss = () => model.score(prompt, response, null).reduce((s, lp, i) => s + c[i] * lp, 0);
  model.accumulateGradients(prompt, response, null, () => c, grads);
  const eps = 1e-5;
  let worst = 0;
  let touched = 0;
  for (let i = 0; i < model.params.length; i++) {
    const p = model.params[i];
    model.params[i] = p + eps;
    const up = loss();
    model.params[i] = p - eps;
    const down = loss();
    model.params[i] = p;
    const fd = (up - down) / (2 * eps);
    worst = Math.max(worst, Math.abs(fd - grads.flat[i]) / (1e-7 + 1e-5 * Math.abs(fd)));
    if (Math.abs(grads.flat[i]) > 1e-8) touched++;
  }
  assert.ok(worst <= 1, `worst scaled error ${worst}`);
  // Most weights get gradient (not every one: unused token rows and positions past the input get none).
  assert.ok(touched > model.params.length / 2, `${touched} of ${model.params.length} weights have gradient`);
});

test('a model rebuilt from its tensors is the same model', () => {
  const a = new Model(tiny);
  const b = new Model({ ...tiny, seed: 123 }, false, a.tensors());
  assert.deepEqual(b.params, a.params);
  assert.throws(() => new Model({ ...tiny, dim: 10 }, false, a.tensors()), /tensor wte is \[11,8\], expected \[11,10\]/);
});
