// Speed of the embedded backend's default model, through the Backend interface (worker threads
// included): decode tokens/s, prompt (prefill) tokens/s, and one train step on 16 × 256 tokens.
// Run: node --import tsx bench/embedded.ts

import { cpus } from 'node:os';
import { EmbeddedBackend, promptBudget } from '../daemon/backends/embedded/index.ts';
import { Model } from '../daemon/backends/embedded/model.ts';
import { SPECIAL, encodeText } from '../daemon/backends/embedded/tokenizer.ts';
import type { SamplingParams, TrainExample } from '../daemon/backends/types.ts';

const backend = await EmbeddedBackend.create();
const cfg = backend.config;
const sampling = (maxTokens: number, seed: number): SamplingParams => ({ temperature: 1, topP: 1, maxTokens, stop: [], topLogprobs: 0, seed });
const time = async (fn: () => Promise<unknown>) => {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
};
const rows: [string, string][] = [];

// Decode: short prompt, replies sampled to max_tokens (seed 8 runs 200 tokens on this base).
let tokens = 0;
let seconds = 0;
for (let run = 0; run < 3; run++) {
  seconds += await time(async () => {
    const out = await backend.generate({ messages: [{ role: 'user', content: 'Say hello.' }], sampling: sampling(200, 8) });
    tokens += out.responseTokens.length;
  });
}
rows.push(['generate (decode, KV cache)', `${(tokens / seconds).toFixed(0)} tokens/s`]);

// Prefill: a prompt filling the whole prompt budget, one token sampled.
const long = [{ role: 'user' as const, content: 'The quick brown fox jumps over the lazy dog. '.repeat(40) }];
const promptLength = (await backend.encodeChat(long)).length;
let prefill = Infinity;
for (let run = 0; run < 3; run++) {
  prefill = Math.min(prefill, await time(() => backend.generate({ messages: long, sampling: sampling(1, 1) })));
}
rows.push([`prefill (${promptLength}-token prompt)`, `${(promptLength / prefill).toFixed(0)} tokens/s`]);

// Train: 16 examples of 192 prompt + 64 response tokens.
const batch: TrainExample[] = Array.from({ length: 16 }, (_, i) => {
  const promptTokens = [SPECIAL.user, ...encodeText(`example ${i} `.repeat(40)).slice(0, 190), SPECIAL.end, SPECIAL.assistant];
  const responseTokens = encodeText(`reply ${i} `.repeat(20)).slice(0, 64);
  return { promptTokens, responseTokens, oldLogprobs: responseTokens.map(() => -5.5), advantages: responseTokens.map(() => (i % 2 ? 1 : -1)) };
});
for (const klCoef of [0, 0.01]) {
  const opts = { lr: 1e-4, clipLow: 0.2, clipHigh: 0.28, klCoef };
  await backend.trainStep(batch, opts); // warm-up (JIT, transposed weights)
  const step = await time(() => backend.trainStep(batch, opts));
  rows.push([`train step, 16 × 256 tokens${klCoef ? ', KL (reference forward)' : ''}`, `${step.toFixed(2)} s`]);
}
await backend.close();

const params = new Model(cfg).parameterCount;
console.log(
  `embedded default model: ${(params / 1e6).toFixed(2)} M parameters (dim ${cfg.dim}, ${cfg.layers} layers, ${cfg.heads} heads, ` +
    `context ${cfg.context}, prompt budget ${promptBudget(cfg)}), LoRA r=8 on q/k/v/o/up/down; ${cpus()[0].model}\n`,
);
console.log('| measure | value |\n|---|---|');
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
