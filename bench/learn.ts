// Does clawrl learn? Simulated users with hidden preferences (simulated-user.ts, after
// OpenClaw-RL's personas) talk to a real in-process daemon on the embedded model, react to every
// reply in words the rules judge reads, and hint after corrections; the daemon's own loop (turns →
// scoring → trainer → hot swap) trains. Two measures, for every method (recipe, hint memory):
// - the paper's: sessions until the first reply of a session keeps the rule in 3 consecutive
//   sessions (cap --sessions, 72 as in the paper);
// - ours: each weight version's hit rate on held-out prompts, measured as soon as it serves.
// Prints the tables and writes bench/learn-results.md and bench/learn.svg.
// Usage: node --import tsx bench/learn.ts [--seeds 1,2] [--personas letter-first,no-markdown,wants-longer,greeting-first]
//        [--methods binary-rl,opd,combined,memory,combined+memory] [--base hints|random|FILE] [--sessions 72]
//        [--turns 4] [--steps 1000] [--batch-size 16] [--lr 3e-3] [--max-tokens 48] [--eval 48]
//        [--dim D --layers L] [--out-dir bench] [--backend embedded|torch]
//        [--save-runs FILE] (the runs as JSON) [--from-runs A.json,B.json] (no runs: report saved ones,
//        e.g. of methods run in parallel processes; give the same settings they ran with)

import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { METHODS, PERSONAS, STREAK, isMethodName, isPersonaName, learn, type LearnOptions, type LearnResult, type MethodName, type PersonaName } from './simulated-user.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2' },
    personas: { type: 'string', default: Object.keys(PERSONAS).join(',') },
    methods: { type: 'string', default: Object.keys(METHODS).join(',') },
    base: { type: 'string', default: 'hints' },
    sessions: { type: 'string', default: '72' },
    turns: { type: 'string', default: '4' },
    steps: { type: 'string', default: '1000' },
    'batch-size': { type: 'string', default: '16' },
    lr: { type: 'string', default: '3e-3' },
    'max-tokens': { type: 'string', default: '48' },
    eval: { type: 'string', default: '48' },
    dim: { type: 'string' },
    layers: { type: 'string' },
    'out-dir': { type: 'string', default: 'bench' },
    backend: { type: 'string', default: 'embedded' },
    'save-runs': { type: 'string' },
    'from-runs': { type: 'string' },
  },
});

const list = <T extends string>(text: string, ok: (s: string) => s is T, what: string, known: object): T[] =>
  text.split(',').map((name) => {
    if (!ok(name)) throw new Error(`unknown ${what} ${JSON.stringify(name)}; use ${Object.keys(known).join(', ')}`);
    return name;
  });
const seeds = values.seeds.split(',').map(Number);
const personas = list(values.personas, isPersonaName, 'persona', PERSONAS);
const methods = list(values.methods, isMethodName, 'method', METHODS);
if (values.backend !== 'embedded' && values.backend !== 'torch') throw new Error(`--backend must be embedded or torch, got ${JSON.stringify(values.backend)}`);
const cap = Number(values.sessions);
const common: Omit<LearnOptions, 'seed' | 'recipe'> = {
  steps: Number(values.steps),
  sessions: cap,
  turnsPerSession: Number(values.turns),
  batchSize: Number(values['batch-size']),
  lr: Number(values.lr),
  maxTokens: Number(values['max-tokens']),
  evalSamples: Number(values.eval),
  base: values.base,
  model: { ...(values.dim && { dim: Number(values.dim) }), ...(values.layers && { layers: Number(values.layers) }) },
  backend: values.backend,
};

interface Run extends LearnResult {
  method: MethodName;
  persona: PersonaName;
  seed: number;
  seconds: number;
}

const started = performance.now();
const runs: Run[] = values['from-runs'] ? values['from-runs'].split(',').flatMap((file) => JSON.parse(readFileSync(file, 'utf8')) as Run[]) : [];
for (const method of values['from-runs'] ? [] : methods) {
  for (const persona of personas) {
    for (const seed of seeds) {
      const t0 = performance.now();
      const result = await learn({ ...common, ...METHODS[method], persona, seed });
      const seconds = (performance.now() - t0) / 1000;
      runs.push({ ...result, method, persona, seed, seconds });
      const curve = result.versions.map((v) => (100 * v.hitRate).toFixed(0)).join(' ');
      console.error(`${method} ${persona} seed ${seed}: sessions to rule ${result.sessionsToRule ?? `>${cap}`}; hit rate % ${curve} (${seconds.toFixed(0)} s)`);
    }
  }
}
const totalSeconds = values['from-runs'] ? runs.reduce((sum, r) => sum + r.seconds, 0) : (performance.now() - started) / 1000;
if (values['save-runs']) writeFileSync(values['save-runs'], JSON.stringify(runs));

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
const of = (method: MethodName, persona?: PersonaName) => runs.filter((r) => r.method === method && (!persona || r.persona === persona));
/** Hit rate at evaluation point v (a run with fewer points keeps its last). */
const at = (r: Run, v: number) => r.versions[Math.min(v, r.versions.length - 1)]!.hitRate;
const last = (r: Run) => r.versions.at(-1)!.hitRate;
const gain = (rs: Run[]) => mean(rs.map((r) => last(r) - r.versions[0]!.hitRate));
/** The paper's average: a run that never kept the rule counts as the cap. */
const sessionsMean = (rs: Run[]) => mean(rs.map((r) => r.sessionsToRule ?? cap));
const reached = (rs: Run[]) => `${rs.filter((r) => r.sessionsToRule !== null).length}/${rs.length}`;
const longest = Math.max(...runs.map((r) => r.versions.length));

function tables(): string {
  const out: string[] = [];
  out.push(
    `| method | sessions to rule (mean, cap ${cap}) | runs that kept it | base | after 4 steps | after 8 steps | final | gain (final − base) | steps |`,
    '|---|---|---|---|---|---|---|---|---|',
  );
  for (const method of methods) {
    const rs = of(method);
    out.push(
      `| ${method} | ${sessionsMean(rs).toFixed(1)} | ${reached(rs)} | ${pct(mean(rs.map((r) => at(r, 0))))} | ${pct(mean(rs.map((r) => at(r, 4))))} | ${pct(mean(rs.map((r) => at(r, 8))))} | ${pct(mean(rs.map(last)))} | ${(100 * gain(rs)).toFixed(0)} points | ${mean(rs.map((r) => r.versions.length - 1)).toFixed(1)} |`,
    );
  }
  out.push('', '**Per persona**: sessions to rule (mean over seeds, cap counted) / hit-rate gain in points', '', `| method | ${personas.join(' | ')} |`, `|---|${personas.map(() => '---|').join('')}`);
  for (const method of methods) {
    out.push(`| ${method} | ${personas.map((p) => `${sessionsMean(of(method, p)).toFixed(0)} / ${(100 * gain(of(method, p))).toFixed(0)}`).join(' | ')} |`);
  }
  out.push('', '**Every run**: sessions to rule, held-out hit rate per version (%)', '', '| method | persona | seed | sessions to rule | hit rate per version | seconds |', '|---|---|---|---|---|---|');
  for (const r of runs) {
    out.push(`| ${r.method} | ${r.persona} | ${r.seed} | ${r.sessionsToRule ?? `>${cap}`} | ${r.versions.map((v) => (100 * v.hitRate).toFixed(0)).join(' ')} | ${r.seconds.toFixed(0)} |`);
  }
  return out.join('\n');
}

const COLORS: Record<MethodName, string> = { 'binary-rl': '#1f77b4', opd: '#d62728', combined: '#2ca02c', memory: '#9467bd', 'combined+memory': '#ff7f0e' };

/** Mean held-out hit rate per step (over personas and seeds), one line per method. */
function svg(): string {
  const [W, H] = [640, 400];
  const pad = { left: 56, right: 170, top: 36, bottom: 48 };
  const steps = longest - 1;
  // Rounded to a tenth of a pixel: finer adds bytes, not sharpness.
  const x = (v: number) => Number((pad.left + (v / steps) * (W - pad.left - pad.right)).toFixed(1));
  const y = (rate: number) => Number((H - pad.bottom - rate * (H - pad.top - pad.bottom)).toFixed(1));
  const path = (rates: number[]) => rates.map((r, v) => `${v === 0 ? 'M' : 'L'}${x(v)},${y(r)}`).join(' ');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${pad.left}" y="20" font-size="14">Held-out hit rate of the hidden preference (mean of ${personas.length} personas × ${seeds.length} seeds)</text>`,
  ];
  for (let i = 0; i <= 10; i += 2) {
    parts.push(`<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(i / 10)}" y2="${y(i / 10)}" stroke="#ddd"/>`, `<text x="${pad.left - 8}" y="${y(i / 10) + 4}" text-anchor="end">${i * 10}%</text>`);
  }
  const tickEvery = Math.max(1, Math.ceil(steps / 12));
  for (let v = 0; v <= steps; v += tickEvery) parts.push(`<text x="${x(v)}" y="${H - pad.bottom + 18}" text-anchor="middle">${v === 0 ? 'base' : v}</text>`);
  parts.push(
    `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(0)}" y2="${y(0)}" stroke="black"/>`,
    `<line x1="${pad.left}" x2="${pad.left}" y1="${y(0)}" y2="${y(1)}" stroke="black"/>`,
    `<text x="${(pad.left + W - pad.right) / 2}" y="${H - 10}" text-anchor="middle">training steps (${common.batchSize} turns each; memory: every ${common.batchSize} turns)</text>`,
  );
  methods.forEach((method, i) => {
    const rs = of(method);
    // Runs with fewer steps (OPD trains only on corrected turns) count with their last version
    // up to the method's longest run, where the line ends.
    const n = Math.max(...rs.map((r) => r.versions.length));
    parts.push(`<path d="${path(Array.from({ length: n }, (_, v) => mean(rs.map((r) => at(r, v)))))}" fill="none" stroke="${COLORS[method]}" stroke-width="3"/>`);
    const ly = pad.top + 10 + i * 20;
    parts.push(
      `<line x1="${W - pad.right + 12}" x2="${W - pad.right + 36}" y1="${ly}" y2="${ly}" stroke="${COLORS[method]}" stroke-width="3"/>`,
      `<text x="${W - pad.right + 42}" y="${ly + 4}">${method}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

const command = `node --import tsx bench/learn.ts ${process.argv.slice(2).join(' ')}`.trim();
const report = [
  '# Does clawrl learn? (bench/learn.ts)',
  '',
  "Simulated users with hidden preferences (bench/simulated-user.ts, after OpenClaw-RL's personas) talk",
  "to a real daemon on the embedded model: letter-first (the reply starts with a letter), no-markdown (no",
  '`* # ` _ ~ >` anywhere), wants-longer (40 characters or more), greeting-first (starts with Hello, Hi or',
  'Hey). Each session is a new chat of a few requests; the user answers each reply with approval or a',
  'correction and, when the method reads hints (OPD, Combined, hint memory), a `/clawrl hint` after a',
  "correction. The daemon's rules judge and loop train; each new version is measured on held-out",
  'requests as soon as it serves (the same sampling seeds for every version, temperature 1). Hint memory',
  "injects the daemon's hints as the plugin's hook does (lexical match on the request; top 3).",
  '',
  `The paper's metric: sessions until the first reply of a session keeps the rule in ${STREAK} consecutive`,
  `sessions, a run that never does counted as the cap (${cap}).`,
  '',
  `- command: \`${command}\``,
  `- embedded base: ${values.base}; LoRA r=8; lr ${common.lr}; batch ${common.batchSize} turns; ${common.turnsPerSession} turns a session; max_tokens ${common.maxTokens}; ${common.evalSamples} held-out replies per version; judge: rules`,
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; ${totalSeconds.toFixed(0)} s ${values['from-runs'] ? 'of runs, summed (they ran in parallel processes)' : 'in all'}`,
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
