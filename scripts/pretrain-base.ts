// Pretrains the embedded backend's hint-reading base (daemon/backends/embedded/pretrain.ts) and
// writes it as a safetensors file that `clawrl-daemon start --base <file>` loads. The shipped
// base (`--base hints`) is this script's output with its defaults:
//   node --import tsx scripts/pretrain-base.ts [--out daemon/backends/embedded/bases/hints.safetensors]
//     [--steps N] [--batch B] [--lr R] [--dim D --layers L --heads H --context C] [--seed S] [--eval N]
// Prints the loss as it goes, then how often the base keeps each instruction with and without it.

import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { BASE_RECIPE, saveBase } from '../daemon/backends/embedded/bases.ts';
import { followRates, pretrain } from '../daemon/backends/embedded/pretrain.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: 'daemon/backends/embedded/bases/hints.safetensors' },
    steps: { type: 'string', default: String(BASE_RECIPE.steps) },
    batch: { type: 'string', default: String(BASE_RECIPE.batch) },
    lr: { type: 'string', default: String(BASE_RECIPE.lr) },
    dim: { type: 'string', default: String(BASE_RECIPE.model.dim) },
    layers: { type: 'string', default: String(BASE_RECIPE.model.layers) },
    heads: { type: 'string', default: String(BASE_RECIPE.model.heads) },
    context: { type: 'string', default: String(BASE_RECIPE.model.context) },
    seed: { type: 'string', default: String(BASE_RECIPE.model.seed) },
    eval: { type: 'string', default: '64' },
  },
});

const recipe = {
  steps: Number(values.steps),
  batch: Number(values.batch),
  lr: Number(values.lr),
  model: { ...BASE_RECIPE.model, dim: Number(values.dim), layers: Number(values.layers), heads: Number(values.heads), context: Number(values.context), seed: Number(values.seed) },
};
const started = performance.now();
const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}`;
// The file is rewritten at every log line, so a long run that is stopped leaves its latest weights.
let id = '';
const model = await pretrain({
  ...recipe,
  onLog: async (step, loss, model) => {
    const seconds = Math.round((performance.now() - started) / 1000);
    id = await saveBase(values.out, model, { ...recipe, stepsDone: step, seconds, machine });
    console.error(`step ${step}/${recipe.steps}: loss ${loss.toFixed(3)} (${seconds} s)`);
  },
});
const seconds = (performance.now() - started) / 1000;
console.log(`wrote ${values.out} (${id}): ${model.parameterCount} parameters, ${recipe.steps} steps of ${recipe.batch} chats in ${seconds.toFixed(0)} s`);
console.log('| instruction | kept with the hint | kept without |\n|---|---|---|');
for (const r of followRates(model, Number(values.eval), 7)) console.log(`| ${r.rule} | ${(100 * r.withHint).toFixed(0)}% | ${(100 * r.without).toFixed(0)}% |`);
