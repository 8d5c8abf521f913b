// Does the guard catch what it should, and only that? The simulated user of simulated-user.ts
// talks to a real in-process daemon (embedded model, guard on, Binary RL, rules judge): a batch of
// turns, then it waits for the daemon's own loop to train and swap (as bench/learn.ts does, so each
// version serves one batch), for a number of steps, in three scenarios:
// The user likes replies that start with a letter (simulated-user.ts) and, as people do, is tired
// of hearing the same reply again: one equal to any of its last 8 replies is corrected too. (The
// toy model otherwise converges on one pleasing reply, and nothing would tell a collapse from
// success.)
// - normal: that user, the learning rate of bench/learn.ts. Any rollback is a false one.
// - adversarial: honest until the model has learned what it likes (--flip-at of the last 16 replies
//   please it), then hostile: it approves the replies it dislikes and corrects the ones it likes.
//   The version serving then is rated far below its reference.
// - collapse: the same user and a learning rate too high (1e-2, 3.3×), so the policy collapses
//   onto a few replies (measured: at 3e-2 the toy's AdamW steps wander instead, slower to collapse).
// Counts rollbacks per run (which version, why, after how many turns), writes
// bench/guard-results.md and bench/guard.svg.
// Usage: node --import tsx bench/guard.ts [--seeds 1,2,3] [--steps 20] [--flip-at 0.75] [--batch-size 16]
//        [--lr 3e-3] [--collapse-lr 1e-2] [--tired-of 8] [--dim D --layers L] [--scenarios normal,adversarial,collapse] [--out-dir bench]
import { rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startDaemon } from '../daemon/server.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { DEFAULT_MODEL } from '../daemon/backends/embedded/model.ts';
import { createLogger } from '../daemon/log.ts';
import type { WeightsListing } from '../daemon/control.ts';
import { describeHealth } from '../daemon/health.ts';
import { TestClient, tempDir } from '../test/helpers.ts';
import { SimulatedUser, type Reaction } from './simulated-user.ts';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    steps: { type: 'string', default: '20' },
    'flip-at': { type: 'string', default: '0.75' },
    'batch-size': { type: 'string', default: '16' },
    lr: { type: 'string', default: '3e-3' },
    'collapse-lr': { type: 'string', default: '1e-2' },
    'tired-of': { type: 'string', default: '8' },
    dim: { type: 'string' },
    layers: { type: 'string' },
    scenarios: { type: 'string', default: 'normal,adversarial,collapse' },
    'out-dir': { type: 'string', default: 'bench' },
  },
});

type Scenario = 'normal' | 'adversarial' | 'collapse';
const seeds = values.seeds.split(',').map(Number);
const steps = Number(values.steps);
const batchSize = Number(values['batch-size']);
const turns = steps * batchSize;
const flipAt = Number(values['flip-at']);
const scenarios = values.scenarios.split(',') as Scenario[];
const model = { ...DEFAULT_MODEL, ...(values.dim && { dim: Number(values.dim) }), ...(values.layers && { layers: Number(values.layers) }) };

interface Run {
  scenario: Scenario;
  seed: number;
  /** Per turn: the version that served it and whether the user approved. */
  timeline: { version: string; hit: boolean; approved: boolean }[];
  /** `worse`: its served reward was below its parent's. In a normal run, one that was not is a false rollback. */
  rollbacks: { version: string; reason: string; turn: number; worse: boolean }[];
  /** The turn the adversarial user turned hostile at (null: it never did, or another scenario). */
  flippedAt: number | null;
  versions: number;
  /** Entropy of each version that served, over base's. */
  entropyRatio: Record<string, number>;
  seconds: number;
}

async function run(scenario: Scenario, seed: number): Promise<Run> {
  const t0 = performance.now();
  const dataDir = tempDir('clawrl-guard-');
  const backend = await EmbeddedBackend.create({ model: { dim: model.dim, layers: model.layers, seed } });
  const daemon = await startDaemon({
    dataDir,
    port: 0,
    log: createLogger('warn'),
    backend,
    recipe: 'binary-rl',
    recipeOptions: { batchSize, lr: scenario === 'collapse' ? Number(values['collapse-lr']) : Number(values.lr) },
    judge: { kind: 'rules' },
    maxWaitMs: 3_600_000,
    idleMs: 3_600_000,
  });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  let flippedAt: number | null = null;
  const heard: string[] = [];
  const react: Reaction = (hit, _turn, reply) => {
    const likes = hit && !heard.includes(reply);
    return flippedAt === null ? likes : !likes;
  };
  try {
    await client.hello(`guard-${scenario}-${seed}`);
    const user = new SimulatedUser(daemon, client, `agent:main:guard-${seed}`, { seed, recipe: 'binary-rl', steps: 0, batchSize, lr: 0, maxTokens: 8, evalSamples: 0 });
    await user.optIn();
    const timeline: Run['timeline'] = [];
    const trainer = daemon.trainer!;
    for (let step = 0; step < steps; step++) {
      const before = trainer.status().steps;
      for (let i = 0; i < batchSize; i++) {
        const { hit, version, text } = await user.turn(false, react);
        timeline.push({ version, hit, approved: react(hit, timeline.length, text) });
        heard.push(text);
        if (heard.length > Number(values['tired-of'])) heard.shift();
        const recent = timeline.slice(-16);
        if (scenario === 'adversarial' && flippedAt === null && recent.length === 16 && recent.filter((t) => t.approved).length >= flipAt * 16) flippedAt = timeline.length;
      }
      // Every turn is rated ±1 and so trainable: the batch trains one step. Then the guard looks.
      const deadline = Date.now() + 120_000;
      while (trainer.status().steps === before || trainer.status().step !== null) {
        if (Date.now() > deadline) throw new Error(`no training step within 120 s: ${JSON.stringify(daemon.status())}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      await daemon.guard!.nudge();
    }
    const res = await fetch(`${daemon.url}/weights`, { headers: { authorization: `Bearer ${daemon.token}` } });
    const listing = (await res.json()) as WeightsListing;
    const rollbacks = listing.versions
      .filter((v) => v.verdict?.state === 'rolled-back')
      .map((v) => {
        const parent = v.parent === null || v.parent === 'base' ? listing.base : listing.versions.find((p) => p.version === v.parent)?.health;
        const worse = (v.health?.reward.mean ?? 0) < (parent?.reward.mean ?? -Infinity);
        return { version: v.version, reason: v.verdict!.reason, turn: timeline.map((t) => t.version).lastIndexOf(v.version) + 1, worse };
      });
    for (const v of [{ version: 'base', health: listing.base, verdict: null }, ...listing.versions]) {
      if (v.health) console.error(`  ${v.version}: ${describeHealth(v.health)}${v.verdict ? ` — ${v.verdict.state}` : ''}`);
    }
    const baseEntropy = listing.base?.entropy ?? NaN;
    const entropyRatio = Object.fromEntries(listing.versions.filter((v) => v.health?.entropy != null).map((v) => [v.version, v.health!.entropy! / baseEntropy]));
    return { scenario, seed, timeline, rollbacks, flippedAt, versions: listing.versions.length, entropyRatio, seconds: (performance.now() - t0) / 1000 };
  } finally {
    client.close();
    await daemon.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const started = performance.now();
const runs: Run[] = [];
for (const scenario of scenarios) {
  for (const seed of seeds) {
    const r = await run(scenario, seed);
    runs.push(r);
    const minRatio = Math.min(...Object.values(r.entropyRatio));
    console.error(`${scenario} seed ${seed}: ${r.versions} versions${r.flippedAt === null ? '' : `, hostile from turn ${r.flippedAt}`}, ${r.rollbacks.length} rollbacks${r.rollbacks.map((b) => ` [${b.version} at turn ${b.turn}: ${b.reason}]`).join('')}; lowest entropy ratio ${minRatio.toFixed(2)}; ${r.seconds.toFixed(0)} s`);
  }
}
const totalSeconds = (performance.now() - started) / 1000;

function table(): string {
  const out = ['| scenario | runs | runs with a rollback | rollbacks | of them rated no lower than the parent | first rollback (turn, why) | versions trained (mean) | lowest entropy / base (median of runs) |', '|---|---|---|---|---|---|---|---|'];
  for (const scenario of scenarios) {
    const mine = runs.filter((r) => r.scenario === scenario);
    const firsts = mine.filter((r) => r.rollbacks.length).map((r) => `seed ${r.seed}: ${r.rollbacks[0]!.version} at ${r.rollbacks[0]!.turn}, ${r.rollbacks[0]!.reason.split(':')[0]}`);
    const lows = mine.map((r) => Math.min(...Object.values(r.entropyRatio))).sort((a, b) => a - b);
    out.push(
      `| ${scenario} | ${mine.length} | ${mine.filter((r) => r.rollbacks.length).length} | ${mine.reduce((n, r) => n + r.rollbacks.length, 0)} | ${mine.reduce((n, r) => n + r.rollbacks.filter((b) => !b.worse).length, 0)} | ${firsts.join('; ') || '–'} | ${(mine.reduce((n, r) => n + r.versions, 0) / mine.length).toFixed(1)} | ${lows[Math.floor(lows.length / 2)]!.toFixed(2)} |`,
    );
  }
  return out.join('\n');
}

const COLORS: Record<Scenario, string> = { normal: '#1f77b4', adversarial: '#d62728', collapse: '#9467bd' };
const WINDOW = 16;

/** Approval rate over the last WINDOW turns, one line per run, a cross at each rollback; one panel per scenario. */
function svg(): string {
  const [W, panelH] = [720, 180];
  const pad = { left: 56, right: 20, top: 30, bottom: 44 };
  const H = pad.top + scenarios.length * panelH + pad.bottom;
  const x = (t: number) => Number((pad.left + (t / turns) * (W - pad.left - pad.right)).toFixed(1));
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${pad.left}" y="20" font-size="14">Approval over the last ${WINDOW} turns (×: the guard rolled back; dashed: the user turns hostile)</text>`,
  ];
  scenarios.forEach((scenario, p) => {
    const top = pad.top + p * panelH;
    const y = (rate: number) => Number((top + panelH - 24 - rate * (panelH - 44)).toFixed(1));
    parts.push(
      `<text x="${pad.left + 6}" y="${top + 14}" fill="${COLORS[scenario]}">${scenario}</text>`,
      `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(0)}" y2="${y(0)}" stroke="black"/>`,
      `<line x1="${pad.left}" x2="${pad.left}" y1="${y(0)}" y2="${y(1)}" stroke="black"/>`,
      `<text x="${pad.left - 6}" y="${y(0) + 4}" text-anchor="end">0%</text>`,
      `<text x="${pad.left - 6}" y="${y(1) + 4}" text-anchor="end">100%</text>`,
      `<line x1="${pad.left}" x2="${W - pad.right}" y1="${y(0.5)}" y2="${y(0.5)}" stroke="#eee"/>`,
    );
    for (const r of runs.filter((r) => r.scenario === scenario)) {
      const rates = r.timeline.map((_, t) => {
        const window = r.timeline.slice(Math.max(0, t + 1 - WINDOW), t + 1);
        return window.filter((w) => w.approved).length / window.length;
      });
      parts.push(`<path d="${rates.map((rate, t) => `${t === 0 ? 'M' : 'L'}${x(t + 1)},${y(rate)}`).join(' ')}" fill="none" stroke="${COLORS[scenario]}" stroke-opacity="0.6"/>`);
      if (r.flippedAt !== null) parts.push(`<line x1="${x(r.flippedAt)}" x2="${x(r.flippedAt)}" y1="${y(0)}" y2="${y(1)}" stroke="${COLORS[scenario]}" stroke-dasharray="4 3"/>`);
      for (const b of r.rollbacks) {
        const [cx, cy] = [x(b.turn), y(rates[b.turn - 1] ?? 0)];
        parts.push(`<path d="M${cx - 5},${cy - 5} L${cx + 5},${cy + 5} M${cx - 5},${cy + 5} L${cx + 5},${cy - 5}" stroke="black" stroke-width="2"/>`);
      }
    }
  });
  for (let t = 0; t <= turns; t += 2 * batchSize) parts.push(`<text x="${x(t)}" y="${H - 26}" text-anchor="middle">${t}</text>`);
  parts.push(`<text x="${(pad.left + W - pad.right) / 2}" y="${H - 8}" text-anchor="middle">turns (a training step every ${batchSize})</text>`, '</svg>');
  return parts.join('\n');
}

const command = `node --import tsx bench/guard.ts ${process.argv.slice(2).join(' ')}`.trim();
const report = [
  '# The guard on simulated users (bench/guard.ts)',
  '',
  `- command: \`${command}\``,
  `- embedded model dim ${model.dim}, ${model.layers} layers; Binary RL, rules judge; batch ${batchSize}; lr ${values.lr} (collapse: ${values['collapse-lr']}); ${steps} steps of ${batchSize} turns per run (adversarial: hostile once ${flipAt * 100} % of the last 16 replies please it); replies of 8 tokens`,
  `- machine: ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}; ${totalSeconds.toFixed(0)} s in all`,
  '',
  table(),
  '',
  '## Every rollback',
  '',
  ...runs.flatMap((r) => r.rollbacks.map((b) => `- ${r.scenario}, seed ${r.seed}: ${b.version} after turn ${b.turn}${b.worse ? '' : ' (rated no lower than its parent)'}: ${b.reason}`)),
  '',
  '## The adversarial user turned hostile at',
  '',
  ...runs.filter((r) => r.scenario === 'adversarial').map((r) => `- seed ${r.seed}: ${r.flippedAt === null ? 'never (the model did not learn enough)' : `turn ${r.flippedAt}`}`),
  '',
  '![approval per turn](guard.svg)',
  '',
].join('\n');
console.log(table());
writeFileSync(join(values['out-dir'], 'guard-results.md'), report);
writeFileSync(join(values['out-dir'], 'guard.svg'), svg());
console.error(`wrote ${join(values['out-dir'], 'guard-results.md')} and ${join(values['out-dir'], 'guard.svg')}`);
