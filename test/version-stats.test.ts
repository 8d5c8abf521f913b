// Per-version sums of served turns are kept by the store with every turn change, not read from
// every turn: after any sequence of the store's state changes they must equal a sum of every turn
// from scratch, survive a restart, and be built once for a store that had none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'lmdb';
import { join } from 'node:path';
import { SCHEMA_VERSION, Store, type SampleRecord, type ScoreRecord, type TurnChange, type TurnKey, type TurnRecord } from '../daemon/store.ts';
import { DRIFT_REPLIES, HealthReader } from '../daemon/health.ts';
import { VersionStatsReader, type VersionStats } from '../daemon/stats.ts';
import { servedFromScratch } from '../daemon/served.ts';
import type { TrainingBackend } from '../daemon/backends/types.ts';
import { tempDir } from './helpers.ts';

/** mulberry32: a seeded generator, so that a failing sequence can be run again. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SESSIONS = ['a', 'b', 'c', 'd'];
const VERSIONS = ['base', 'v000001', 'v000002'];
const REWARDS = [null, -1, 0, 1];

/** Sums kept by adding and taking away round differently from one sum: numbers are compared to 9 decimals. */
const rounded = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' ? Number(v.toFixed(9)) : v)));

const score = (reward: number | null): ScoreRecord => ({ recipe: 'r', score: reward, votes: [], source: 'rules', hint: null, hintVotes: [], advantages: null, mask: null, failures: 0, scoredAt: 0 });

async function newTurn(store: Store, rnd: () => number, id: string, at: { sessionKey?: string; weightVersion?: string } = {}): Promise<void> {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const length = Math.floor(rnd() * 6);
  const responseTokens = Array.from({ length }, () => Math.floor(rnd() * 4));
  const sample: Omit<SampleRecord, 'ordinal' | 'logMark'> = {
    id,
    sessionKey: at.sessionKey ?? pick(SESSIONS),
    side: false,
    createdAt: Math.floor(rnd() * 100),
    model: 'm',
    weightVersion: at.weightVersion ?? pick(VERSIONS),
    requestMessages: [{ role: 'user', content: 'q' }],
    promptTokens: [1],
    responseTokens,
    // Now and then a reply whose logprobs were not all recorded: it counts as a turn, not a reply.
    logprobs: rnd() < 0.1 ? [] : responseTokens.map(() => -rnd() * 3),
    text: 'a',
    toolCalls: [],
    finishReason: 'stop',
  };
  const record = await store.recordSample(sample);
  await store.closeSample({
    sessionKey: record.sessionKey,
    turnIndex: record.ordinal,
    sampleId: record.id,
    createdAt: record.createdAt,
    weightVersion: record.weightVersion,
    action: { text: 'a', toolCalls: [] },
    nextState: { toolResults: [] },
    reward: pick(REWARDS),
    hint: null,
  });
}

const fromScratch = (store: Store) => rounded([...servedFromScratch(store)].sort(([a], [b]) => a.localeCompare(b)));
const kept = (store: Store) => rounded([...store.servedByVersion()].sort(([a], [b]) => a.localeCompare(b)));
/** Each version's turns as sample ids, from the index (`turnsOfVersion`) and from a walk of every turn. */
const byVersion = (store: Store) => {
  const versions = [...new Set([...store.turnsOf()].map((t) => t.weightVersion))].sort();
  const walked = versions.map((v) => [v, [...store.turnsOf()].filter((t) => t.weightVersion === v).map((t) => t.sampleId)]);
  const indexed = versions.map((v) => [v, [...store.turnsOfVersion(v)].map((t) => t.sampleId)]);
  return { walked, indexed, entries: [...store.internalTables().versionTurns.getKeys()].length, turns: [...store.turnsOf()].length };
};
const assertIndexed = (store: Store, message: string) => {
  const { walked, indexed, entries, turns } = byVersion(store);
  assert.deepEqual(indexed, walked, message);
  assert.equal(entries, turns, `${message}: no index entry outlives its turn`);
};

test('the kept per-version sums equal a sum from scratch after random store changes, and survive a restart', async () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const rnd = random(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    const dir = tempDir();
    let store = await Store.open(dir);
    const reader = new VersionStatsReader(store);
    let ids = 0;
    let counter = 0;
    const turns = () => [...store.turnsOf()];
    const step = async (): Promise<unknown> => {
      const op = rnd();
      const existing = turns();
      if (op < 0.4 || existing.length === 0) return newTurn(store, rnd, `s${seed}-${ids++}`);
      const turn = pick(existing);
      const key: TurnKey = [turn.sessionKey, turn.turnIndex];
      if (op < 0.55) return store.recordScore(turn, score(turn.reward), rnd() < 0.5).then(() => undefined);
      if (op < 0.7) {
        const revised: TurnRecord = { ...turn, reward: pick(REWARDS), nextState: { toolResults: [], feedback: { rating: pick(['good', 'bad'] as const) } } };
        return store.atomically(() => store.reviseTurn(revised));
      }
      if (op < 0.75) {
        // Rolled back: nothing of it may count.
        return store.atomically(() => {
          store.reviseTurn({ ...turn, reward: 1 });
          throw new Error('rolled back');
        }).catch(() => undefined);
      }
      if (op < 0.8) {
        const batch = await store.startBatch(3, (n) => `v${String(n).padStart(6, '0')}`);
        if (!batch) return;
        return store.finishBatch({ version: batch.version, parent: batch.parent, recipe: 'r', createdAt: ++counter, turnIds: batch.keys.map(([s, i]) => `${s}#${i}`), metrics: {} });
      }
      if (op < 0.9) return store.removeSession(pick(SESSIONS));
      if (op < 0.95) return store.expireBefore(Math.floor(rnd() * 30));
      return store.dropUnscored(key);
    };
    for (let round = 0; round < 40; round++) {
      // Several at once too: their transactions may commit together.
      await Promise.all(Array.from({ length: 1 + Math.floor(rnd() * 4) }, step));
      assert.deepEqual(kept(store), fromScratch(store), `seed ${seed}, round ${round}`);
      assertIndexed(store, `seed ${seed}, round ${round}`);
      // A reader's cached answer follows too. The batch summary is left out: it is read once per
      // version by design (a removed session's scores then still count in it).
      const withoutBatch = (stats: VersionStats[]) => rounded(stats.map(({ batch: _, ...rest }) => rest));
      assert.deepEqual(withoutBatch(reader.read()), withoutBatch(new VersionStatsReader(store).read()), `seed ${seed}, round ${round}`);
    }
    assert.ok(turns().length > 0);
    const before = kept(store);
    await store.close();
    store = await Store.open(dir);
    assert.deepEqual(kept(store), before);
    await store.close();
  }
});

test('turn changes are delivered after their transaction commits, and not at all when it rolls back', async () => {
  const store = await Store.open(tempDir());
  const seen: TurnChange[] = [];
  store.onTurnChange((c) => seen.push(c));
  const rnd = random(9);
  await newTurn(store, rnd, 'x', { sessionKey: 'a' });
  assert.equal(seen.length, 1);
  assert.equal(seen[0]!.before, undefined);
  assert.equal(seen[0]!.after?.sampleId, 'x');
  const turn = store.turn(['a', 0])!;
  await assert.rejects(
    store.atomically(() => {
      store.reviseTurn({ ...turn, reward: 1 });
      throw new Error('no');
    }),
  );
  assert.equal(seen.length, 1);
  assert.throws(() => store.reviseTurn(turn), /inside store.atomically/);
  await store.removeSession('a');
  assert.equal(seen.length, 2);
  assert.equal(seen[1]!.after, undefined);
  assert.equal(seen[1]!.before?.sampleId, 'x');
  await store.close();
});

test('a version 2 store gets its per-version sums and a version 3 store its index of turns by version at open, from every turn', async () => {
  const dir = tempDir();
  let store = await Store.open(dir);
  const rnd = random(5);
  for (let i = 0; i < 30; i++) await newTurn(store, rnd, `t${i}`);
  assert.ok(store.servedByVersion().size > 0);
  const sums = kept(store);
  await store.close();
  // As version 2 left it: no sums.
  const raw = open({ path: join(dir, 'store'), maxDbs: 32 });
  await raw.openDB({ name: 'versionServed' }).clearAsync();
  await raw.openDB({ name: 'meta' }).put('schemaVersion', 2);
  await raw.close();
  store = await Store.open(dir);
  assert.equal(store.meta.get('schemaVersion'), SCHEMA_VERSION);
  assert.deepEqual(kept(store), sums);
  assertIndexed(store, 'from version 2');
  await store.close();
  // As version 3 left it: sums, no index by version, an index by tool call id.
  const raw3 = open({ path: join(dir, 'store'), maxDbs: 32 });
  await raw3.openDB({ name: 'versionTurns' }).clearAsync();
  await raw3.openDB({ name: 'toolCallSamples' }).put('call_1', 't0');
  await raw3.openDB({ name: 'meta' }).put('schemaVersion', 3);
  await raw3.close();
  store = await Store.open(dir);
  assert.equal(store.meta.get('schemaVersion'), SCHEMA_VERSION);
  assertIndexed(store, 'from version 3');
  assert.deepEqual([...store.openDB<string, string>('toolCallSamples').getKeys()], [], 'the unread index by tool call id is emptied');
  assert.ok(byVersion(store).entries > 0);
  await store.close();
});

test('drift measured for a version is dropped with its turns, and measuring stops at DRIFT_REPLIES', async () => {
  const store = await Store.open(tempDir());
  const rnd = random(3);
  for (let i = 0; i < DRIFT_REPLIES + 4; i++) await newTurn(store, rnd, `t${i}`, { sessionKey: SESSIONS[i % 2], weightVersion: 'v000001' });
  const health = new HealthReader(store);
  let scored = 0;
  const backend = {
    score: async (_: number[], response: number[]) => {
      scored++;
      return response.map(() => -5);
    },
  } as unknown as TrainingBackend;
  const replies = health.read().get('v000001')!.replies;
  const measured = await health.measureDrift(backend, 'v000001');
  assert.equal(measured, Math.min(DRIFT_REPLIES, replies));
  assert.equal(await health.measureDrift(backend, 'v000001'), 0);
  assert.equal(scored, measured, 'nothing is scored again');
  const before = health.read().get('v000001')!;
  assert.equal(before.driftReplies, measured);
  const inA = [...store.turnsOf('a')].filter((t) => store.sample(t.sampleId)!.logprobs.length > 0).length;
  await store.removeSession('a');
  assert.equal(health.read().get('v000001')!.driftReplies, measured - inA);
  await store.close();
});
