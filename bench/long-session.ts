// What the daemon's background passes cost as one session grows: an OpenClaw main session lives
// for months, so a pass that reads a whole session slows down with it and blocks the event loop
// (acks, serving) while it reads. A real store holds one session of R runs (user message, injected
// hints, model call, tool result, model output, run end; every other run served by the daemon
// with a recorded sample, the rest derived from events); then one more run arrives and the three
// passes that follow each stored batch run once each: deriving samples from events, turn assembly
// with one open sample, and the hint feedback of its scored turn.
//   node --import tsx bench/long-session.ts [runs,...]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Event } from '../protocol/index.ts';
import { EventSamples } from '../daemon/event-samples.ts';
import { HintMemory } from '../daemon/hints.ts';
import { Store, type ScoreRecord, type TurnRecord } from '../daemon/store.ts';
import { TurnAssembler } from '../daemon/turns.ts';

const sizes = (process.argv[2] ?? '500,2000,8000').split(',').map(Number);
const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const SESSION = 'agent:main:main';

async function measure(runs: number) {
  const dir = mkdtempSync(join(tmpdir(), 'clawrl-bench-session-'));
  const store = await Store.open(dir);
  let seq = 0;
  const ev = (e: Record<string, unknown>) => ({ seq: ++seq, at: Date.now(), sessionKey: SESSION, ...e }) as Event;
  const served = (r: number) => r % 2 === 0;
  const before = (r: number) => [
    ev({ kind: 'user.message', runId: `r${r}`, content: `please list the files of project ${r}` }),
    ev({ kind: 'hints.injected', runId: `r${r}`, hintIds: ['h1'] }),
    ev({ kind: 'model.call', runId: `r${r}`, callId: `r${r}:1`, provider: served(r) ? 'clawrl' : 'hosted', model: 'm', side: false }),
  ];
  const after = (r: number) => [
    ev({ kind: 'tool.result', runId: `r${r}`, toolCallId: `t${r}`, toolName: 'exec', params: { command: 'ls' }, output: 'a.txt b.txt', isError: false }),
    ev({ kind: 'model.output', runId: `r${r}`, assistantTexts: [`done ${r}`], toolCalls: [] }),
    ev({ kind: 'run.end', runId: `r${r}`, success: true }),
  ];
  const sample = (r: number) => store.recordSample({
    id: `s${r}`, sessionKey: SESSION, runId: `r${r}`, callId: `r${r}:1`, side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base',
    requestMessages: [{ role: 'user', content: 'x' }], promptTokens: [1], responseTokens: [2], logprobs: [-1], text: `done ${r}`,
    toolCalls: [{ id: `t${r}`, name: 'exec', arguments: '{}' }], finishReason: 'tool_calls',
  });
  await store.appendEvents('c', [ev({ kind: 'session.optin' })]);
  const derive = new EventSamples(store);
  const turns: TurnRecord[] = [];
  const assembler = new TurnAssembler({ store, log: quiet, onTurn: (turn) => turns.push(turn) });
  const hints = new HintMemory({ store, log: quiet });
  for (let r = 0; r < runs; r += 100) {
    const batch: Event[] = [];
    for (let i = r; i < Math.min(r + 100, runs); i++) {
      batch.push(...before(i));
      if (served(i)) await sample(i);
      batch.push(...after(i));
    }
    await store.appendEvents('c', batch);
  }
  await derive.deriveOnce();
  await assembler.assembleOnce();
  turns.length = 0;
  // One more run, served: its sample is open until its tool result arrives.
  await store.appendEvents('c', before(runs));
  await sample(runs);
  await store.appendEvents('c', after(runs));
  const time = async (pass: () => Promise<unknown>) => {
    const t0 = performance.now();
    await pass();
    return performance.now() - t0;
  };
  const newTurn = () => {
    const turn = turns.find((t) => t.sampleId === `s${runs}`);
    if (!turn) throw new Error(`the new run made no turn (turns made: ${turns.map((t) => t.sampleId).join(', ')})`);
    return turn;
  };
  const row = {
    runs,
    events: store.eventLogPosition(),
    deriveMs: await time(() => derive.deriveOnce()),
    assembleMs: await time(() => assembler.assembleOnce()),
    // The user rated the run: the hints injected into it are counted.
    hintFeedbackMs: await time(() => hints.learnFrom({ ...newTurn(), nextState: { toolResults: [], feedback: { rating: 'good' } } }, { hint: null } as ScoreRecord)),
  };
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return row;
}

console.log('| runs in the session | events | derive pass ms | assembly pass ms | hint feedback ms |');
console.log('|---|---|---|---|---|');
for (const runs of sizes) {
  const r = await measure(runs);
  console.log(`| ${r.runs.toLocaleString('en-US')} | ${r.events.toLocaleString('en-US')} | ${r.deriveMs.toFixed(1)} | ${r.assembleMs.toFixed(1)} | ${r.hintFeedbackMs.toFixed(1)} |`);
}
