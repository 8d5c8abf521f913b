// Proof that clawrl learns: a simulated user with a hidden preference (the reply starts with a
// letter; see simulated-user.ts) talks to a real in-process daemon on the embedded model, reacts
// to every reply in words the rules judge reads, and the daemon's own loop (turns → scoring →
// trainer → hot swap) trains. Each new weight version is measured on held-out prompts as soon as
// it serves. Prints the tables and writes bench/learn-results.md and bench/learn.svg.
// Usage: node --import tsx bench/learn.ts [--seeds 1,2,3] [--steps 12] [--recipes binary-rl,opd,combined]
//        [--batch-size 16] [--lr 3e-3] [--max-tokens 8] [--eval 64] [--dim D --layers L] [--out-dir bench]
//        [--backend embedded|torch] (torch: the torch worker's tiny test model on the CPU)

import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isRecipeName, type RecipeName } from '../recipes/index.ts';
import { DEFAULT_MODEL } from '../daemon/backends/embedded/model.ts';
import { learn, type LearnOptions, type VersionResult } from './simulated-user.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    steps: { type: 'string', default: '12' },
    recipes: { type: 'string', default: 'binary-rl,opd,combined' },
    'batch-size': { type: 'string', default: '16' },
    lr: { type: 'string', default: '3e-3' },
    'max-tokens': { type: 'string', default: '8' },
    eval: { type: 'string', default: '64' },
    dim: { type: 'string' },
    layers: { type: 'string' },
    'out-dir': { type: 'string', default: 'bench' },
    backend: { type: 'string', default: 'embedded' },
  },
});

const seeds = values.seeds.split(',').map(Number);
const recipeNames = values.recipes.split(',').map((name) => {
  if (!isRecipeName(name)) throw new Error(`unknown recipe ${JSON.stringify(name)}; use binary-rl, opd or combined`);
  return name;
});
const model = { ...(values.dim && { dim: Number(values.dim) }), ...(values.layers && { layers: Number(values.layers) }) };
const base: Omit<LearnOptions, 'seed' | 'recipe'> = {
  steps: Number(values.steps),
  batchSize: Number(values['batch-size']),
  lr: Number(values.lr),
  maxTokens: Number(values['max-tokens']),
  evalSamples: Number(values.eval),
  model,
  backend: values.backend as 'embedded' | 'torch',
};
if (base.backend !== 'embedded' && base.backend !== 'torch') throw new Error(`--backend must be embedded or torch, got ${JSON.stringify(values.backend)}`);

interface Curve {
  recipe: RecipeName;
  seed: number;
  results: VersionResult[];
  seconds: number;
}

const started = performance.now();
const curves: Curve[] = [];
for (const recipe of recipeNames) {
  for (const seed of seeds) {
    const t0 = performance.now();
    const results = await learn({
      ...base,
      seed,
      recipe,
      onVersion: (r) =>
        console.error(`${recipe} seed ${seed} ${r.version}: hit rate ${r.hitRate.toFixed(3)}` + (r.trainHitRate === null ? '' : ` (training turns ${r.trainHitRate.toFixed(2)} of ${r.turns}, loss ${r.loss?.toFixed(3)})`)),
    });
    curves.push({ recipe, seed, results, seconds: (performance.now() - t0) / 1000 });
  }
}
const totalSeconds = (performance.now() - started) / 1000;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
/** Hit rate per version, averaged over the recipe's seeds. */
const meanCurve = (recipe: RecipeName) => {
  const mine = curves.filter((c) => c.recipe === recipe);
  return mine[0]!.results.map((_, v) => mean(mine.map((c) => c.results[v]!.hitRate)));
};

function tables(): string {
  const out: string[] = [];
  const versions = Array.from({ length: base.steps + 1 }, (_, v) => (v === 0 ? 'base' : `v${v}`));
  out.push('| recipe | base | after 4 steps | after 8 steps | final | best | gain (final − base) |', '|---|---|---|---|---|---|---|');
  for (const recipe of recipeNames) {
    const m = meanCurve(recipe);
    const at = (v: number) => (v < m.length ? pct(m[v]!) : '–');
    out.push(`| ${recipe} | ${pct(m[0]!)} | ${at(4)} | ${at(8)} | ${pct(m.at(-1)!)} | ${pct(Math.max(...m))} | ${((m.at(-1)! - m[0]!) * 100).toFixed(0)} points |`);
  }
  for (const recipe of recipeNames) {
    out.push('', `**${recipe}**: held-out hit rate per weight version`, '', `| seed | ${versions.join(' | ')} | seconds |`, `|---|${versions.map(() => '---|').join('')}---|`);
    for (const c of curves.filter((c) => c.recipe === recipe)) {
      out.push(`| ${c.seed} | ${c.results.map((r) => pct(r.hitRate)).join(' | ')} | ${c.seconds.toFixed(0)} |`);
    }
    out.push(`| mean | ${meanCurve(recipe).map(pct).join(' | ')} | |`);
  }
  return out.join('\n');
}

const COLORS: Record<RecipeName, string> = { 'binary-rl': '#1f77b4', opd: '#d62728', combined: '#2ca02c' };

/** A line chart of hit rate per version: one thin line per seed, a thick one for the mean. */
function svg(): string {
  const [W, H] = [640, 400];
  const pad = { left: 56, right: 160, top: 36, bottom: 48 };
  // Rounded to a tenth of a pixel: finer adds bytes, not sharpness.
  const x = (v: number) => Number((pad.left + (v / base.steps) * (W - pad.left - pad.right)).toFixed(1));
  const y = (rate: number) => Number((H - pad.bottom - rate * (H - pad.top - pad.bottom)).toFixed(1));
  const path = (rates: number[]) => rates.map((r, v) => `${v === 0 ? 'M' : 'L'}${x(v)},${y(r)}`).join(' ');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${pad.left}" y="20" font-size="14">Held-out hit rate per weight version (reply starts with a letter)</text>`,
  ];
  for (let i = 0; i <= 10; i += 2) {
    const rate = i / 10;
    parts.push(
      `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(rate)}" y2="${y(rate)}" stroke="#ddd"/>`,
      `<text x="${pad.left - 8}" y="${y(rate) + 4}" text-anchor="end">${i * 10}%</text>`,
    );
  }
  const tickEvery = Math.max(1, Math.ceil(base.steps / 12));
  for (let v = 0; v <= base.steps; v += tickEvery) {
    parts.push(`<text x="${x(v)}" y="${H - pad.bottom + 18}" text-anchor="middle">${v === 0 ? 'base' : v}</text>`);
  }
  parts.push(
    `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(0)}" y2="${y(0)}" stroke="black"/>`,
    `<line x1="${pad.left}" x2="${pad.left}" y1="${y(0)}" y2="${y(1)}" stroke="black"/>`,
    `<text x="${(pad.left + W - pad.right) / 2}" y="${H - 10}" text-anchor="middle">training steps (batch of ${base.batchSize} turns each)</text>`,
  );
  recipeNames.forEach((recipe, i) => {
    const color = COLORS[recipe];
    for (const c of curves.filter((c) => c.recipe === recipe)) {
      parts.push(`<path d="${path(c.results.map((r) => r.hitRate))}" fill="none" stroke="${color}" stroke-width="1" stroke-opacity="0.35"/>`);
    }
    parts.push(`<path d="${path(meanCurve(recipe))}" fill="none" stroke="${color}" stroke-width="3"/>`);
    const ly = pad.top + 10 + i * 20;
    parts.push(
      `<line x1="${W - pad.right + 12}" x2="${W - pad.right + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${W - pad.right + 42}" y="${ly + 4}">${recipe}</text>`,
    );
  });
  const ly = pad.top + 10 + recipeNames.length * 20;
  parts.push(
    `<text x="${W - pad.right + 12}" y="${ly + 4}" fill="#666">thick: mean of ${seeds.length}</text>`,
    `<text x="${W - pad.right + 12}" y="${ly + 20}" fill="#666">thin: one seed each</text>`,
    '</svg>',
  );
  return parts.join('\n');
}

const shape = { ...DEFAULT_MODEL, ...model };
const command = `node --import tsx bench/learn.ts ${process.argv.slice(2).join(' ')}`.trim();
const report = [
  '# Does clawrl learn? (bench/learn.ts)',
  '',
  'A simulated user likes replies that start with a letter (A–Z, a–z) and never says so: it answers',
  'each reply with approval ("thanks!", "perfect", …) or a correction ("try again", "no, that is not it", …),',
  'and for OPD and Combined it adds `/clawrl hint` (a `feedback` event naming the preference) after a',
  "correction. The daemon's rules judge turns the reactions into rewards and its loop trains; each new",
  'weight version is measured, as soon as it serves, on held-out prompts (the same sampling seeds for',
  'every version, temperature 1).',
  '',
  "The embedded model's weights are random, so its frozen reference (OPD's teacher) cannot read the",
  "hint: the teacher − student gap says nothing about the preference. OPD can only stay near the base",
  'rate here, and Combined learns through its Binary RL term, with the gap as noise on top.',
  '',
  `- command: \`${command}\``,
  `- embedded model: dim ${shape.dim}, ${shape.layers} layers, ${shape.heads} heads; LoRA r=8; lr ${base.lr}; batch ${base.batchSize} turns; max_tokens ${base.maxTokens}; ${base.evalSamples} held-out replies per version; judge: rules`,
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; ${totalSeconds.toFixed(0)} s in all`,
  '',
  tables(),
  '',
  '![hit rate per version](learn.svg)',
  '',
].join('\n');

console.log(tables());
writeFileSync(join(values['out-dir'], 'learn-results.md'), report);
writeFileSync(join(values['out-dir'], 'learn.svg'), svg());
console.error(`wrote ${join(values['out-dir'], 'learn-results.md')} and ${join(values['out-dir'], 'learn.svg')}`);
