// Hint memory: retrieval latency of the plugin's injection path (the real plugin entry's
// before_prompt_build hook, answering from its copy of 10,000 hints), and retrieval quality on a
// small labelled set (bench/hints-labelled.json), alone and hidden among the 10,000 synthetic
// hints. The daemon is a stand-in HTTP server serving GET /hints, so only the plugin is measured.
// Target: hook p99 < 20 ms at 10k hints.
//   node --import tsx bench/hints.ts [calls]
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HintCache } from '../plugin/hints.ts';
import type { PromptBuildResult } from '../plugin/host-types.ts';
import entry from '../plugin/index.ts';
import type { HintEntry } from '../protocol/index.ts';
import { fakeApi } from '../test/fake-openclaw.ts';

const calls = Number(process.argv[2] ?? 2000);
const STORED = 10_000;
const TOP_K = 3;
const MAX_TOKENS = 300;

interface Labelled {
  hints: { id: string; text: string; context: string }[];
  requests: { text: string; relevant: string[] }[];
}
const labelled = JSON.parse(readFileSync(new URL('./hints-labelled.json', import.meta.url), 'utf8')) as Labelled;

// Synthetic hints in the vocabulary of developer and assistant work, so that requests hit many of
// them and ranking has real work to do (a deterministic PRNG keeps runs comparable).
let seed = 42;
const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
const pick = <T>(list: readonly T[]) => list[rand(list.length)]!;
const verbs = ['run', 'build', 'deploy', 'check', 'restart', 'install', 'update', 'review', 'clean', 'migrate', 'test', 'format', 'backup', 'sync', 'draft'];
const objects = ['service', 'tests', 'database', 'report', 'image', 'cluster', 'branch', 'package', 'invoice', 'calendar', 'logs', 'config', 'script', 'frontend', 'api'];
const tools = ['make', 'npm', 'pnpm', 'docker', 'kubectl', 'git', 'rsync', 'alembic', 'pytest', 'eslint', 'terraform', 'helm', 'cargo', 'go', 'yarn'];
const synthetic: HintEntry[] = Array.from({ length: STORED }, (_, i) => {
  const [v, o, t, o2] = [pick(verbs), pick(objects), pick(tools), pick(objects)];
  return {
    id: `s${i}`,
    text: `Before you ${v} the ${o}, use ${t} with the ${o2} flags from the project notes (${i}).`,
    context: `${v} the ${o} ${o2}`,
    scope: { agent: 'main' },
    weight: 1 + rand(4),
  };
});
const labelledHints: HintEntry[] = labelled.hints.map((h) => ({ ...h, scope: { agent: 'main' }, weight: 1 }));

/** A stand-in daemon that serves one snapshot at GET /hints. */
async function serve(hints: HintEntry[]) {
  const body = JSON.stringify({ revision: 1, hints });
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', etag: '"1"' }).end(body));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

// --- latency of the hook path ---
const daemon = await serve([...synthetic, ...labelledHints]);
// Injection-only (no opt-in): the hook does all its work, and no event link is opened.
const { api, hooks } = fakeApi({ daemonUrl: `ws://127.0.0.1:${daemon.port}/ws`, token: 'bench', optInByDefault: false, hintsForAllSessions: true });
entry.register(api);
const hook = hooks.get('before_prompt_build')! as (event: unknown, ctx: unknown) => Promise<PromptBuildResult | undefined>;
const requestTexts = [...labelled.requests.map((r) => r.text), ...Array.from({ length: 50 }, () => `please ${pick(verbs)} the ${pick(objects)} and ${pick(verbs)} the ${pick(objects)}`)];
const ctx = (i: number) => ({ sessionKey: `agent:main:bench-${i % 7}`, agentId: 'main', runId: `run-${i}`, trigger: 'user' });

let started = performance.now();
await hook({ prompt: requestTexts[0], currentUserMessage: requestTexts[0] }, ctx(0));
const coldMs = performance.now() - started;
const times: number[] = [];
let injected = 0;
for (let i = 0; i < calls; i++) {
  const text = requestTexts[i % requestTexts.length]!;
  started = performance.now();
  const result = await hook({ prompt: text, currentUserMessage: text }, ctx(i));
  times.push(performance.now() - started);
  if (result?.prependContext) injected++;
}
times.sort((a, b) => a - b);
daemon.close();

// --- quality on the labelled set ---
async function quality(hints: HintEntry[]) {
  const server = await serve(hints);
  const cache = new HintCache({ url: `http://127.0.0.1:${server.port}/hints`, token: 'bench', logger: { warn: (m) => console.error(m) } });
  await cache.refresh();
  server.close();
  const related = labelled.requests.filter((r) => r.relevant.length > 0);
  const unrelated = labelled.requests.filter((r) => r.relevant.length === 0);
  const picks = (text: string) => cache.select(text, 'main', 'agent:main:bench', { topK: TOP_K, maxTokens: MAX_TOKENS }).map((h) => h.id);
  let precisionSum = 0;
  let answered = 0;
  let recallSum = 0;
  for (const r of related) {
    const got = picks(r.text);
    const hits = got.filter((id) => r.relevant.includes(id)).length;
    if (got.length > 0) {
      precisionSum += hits / got.length;
      answered++;
    }
    recallSum += hits / Math.min(TOP_K, r.relevant.length);
  }
  const falseInjections = unrelated.filter((r) => picks(r.text).length > 0).length;
  return {
    precision: precisionSum / Math.max(1, answered),
    recall: recallSum / related.length,
    answered: `${answered}/${related.length}`,
    falseInjections: `${falseInjections}/${unrelated.length}`,
  };
}
const alone = await quality(labelledHints);
const mixed = await quality([...synthetic, ...labelledHints]);

const ms = (v: number) => v.toFixed(3);
console.log(`## Hint memory (${STORED.toLocaleString('en')} stored hints + ${labelledHints.length} labelled, top-k ${TOP_K}, budget ${MAX_TOKENS} tokens)\n`);
console.log('| injection path | calls | p50 ms | p99 ms | max ms | injected |');
console.log('|---|---|---|---|---|---|');
console.log(`| before_prompt_build, warm copy | ${calls} | ${ms(percentile(times, 50))} | ${ms(percentile(times, 99))} | ${ms(times.at(-1)!)} | ${injected}/${calls} |`);
console.log(`| first call of a process (fetch + index ${(STORED + labelledHints.length).toLocaleString('en')} hints) | 1 | ${ms(coldMs)} | | | |`);
console.log('');
console.log(`| labelled set (${labelled.requests.length} requests) | precision@${TOP_K} | recall@${TOP_K} | related requests given hints | unrelated requests given hints |`);
console.log('|---|---|---|---|---|');
console.log(`| ${labelledHints.length} labelled hints alone | ${alone.precision.toFixed(2)} | ${alone.recall.toFixed(2)} | ${alone.answered} | ${alone.falseInjections} |`);
console.log(`| among ${STORED.toLocaleString('en')} synthetic hints | ${mixed.precision.toFixed(2)} | ${mixed.recall.toFixed(2)} | ${mixed.answered} | ${mixed.falseInjections} |`);
process.exit(0);
