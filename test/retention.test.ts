// Deleting for real: `sessions rm` frees space that later writes reuse, retention expires old
// data but keeps the opt-in state, and an export of one session holds nothing of another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SCHEMA_VERSION, Store, turnIdOf, type SampleRecord } from '../daemon/store.ts';
import { WeightsDir, weightsRoot } from '../daemon/weights.ts';
import { readFileSync } from 'node:fs';
import { open } from 'lmdb';
import { createLogger } from '../daemon/log.ts';
import { TurnAssembler } from '../daemon/turns.ts';
import { join } from 'node:path';
import { optIn, runCli, tempDir, userMessage } from './helpers.ts';

const sample = (id: string, sessionKey: string, createdAt: number): Omit<SampleRecord, 'ordinal' | 'logMark'> => ({
  id,
  sessionKey,
  side: false,
  createdAt,
  model: 'm',
  weightVersion: 'base',
  requestMessages: [{ role: 'user', content: 'q' }],
  promptTokens: [1],
  responseTokens: [2],
  logprobs: [-1],
  text: 'a',
  toolCalls: [],
  finishReason: 'stop',
});

test('sessions rm frees the space: the same data written again does not grow the store', async () => {
  const store = await Store.open(tempDir());
  const fill = async (key: string, from: number) => {
    await store.appendEvents('c', [optIn(from, key), ...Array.from({ length: 2000 }, (_, i) => userMessage(from + 1 + i, key, 'y'.repeat(1000)))]);
  };
  await fill('first', 1);
  const full = store.usedBytes();
  assert.ok(full > 2_000_000, `${full} bytes`);
  assert.ok(await store.removeSession('first'));
  assert.ok(store.usedBytes() < full / 10, `${store.usedBytes()} bytes left after rm`);
  await fill('second', 10_000);
  assert.ok(store.usedBytes() < full * 1.2, 'freed pages were reused');
  assert.equal([...store.sessionEventsOf('first')].length, 0);
  await store.close();
});

test('retention expires old events and turns but keeps the session opted in', async () => {
  const store = await Store.open(tempDir());
  const old = Date.now() - 40 * 86_400_000;
  await store.appendEvents('c', [
    { kind: 'session.optin', seq: 1, at: old, sessionKey: 's' },
    { kind: 'user.message', seq: 2, at: old, sessionKey: 's', content: 'ancient' },
    { kind: 'user.message', seq: 3, at: Date.now(), sessionKey: 's', content: 'recent' },
  ]);
  await store.recordSample(sample('old', 's', old));
  await store.recordSample(sample('new', 's', Date.now()));
  await store.turns.put(['s', 0], { sessionKey: 's', turnIndex: 0, sampleId: 'old', createdAt: old, weightVersion: 'base', action: { text: 'a', toolCalls: [] }, nextState: { toolResults: [] }, reward: null, hint: null });
  const expired = await store.expireBefore(Date.now() - 30 * 86_400_000);
  assert.deepEqual(expired, { events: 2, turns: 1 });
  assert.deepEqual([...store.sessionEventsOf('s')].map((e) => (e.kind === 'user.message' ? e.content : e.kind)), ['recent']);
  assert.equal(store.samples.get('old'), undefined);
  assert.ok(store.samples.get('new'));
  assert.equal(store.turns.get(['s', 0]), undefined);
  assert.ok(store.isOptedIn('s'), 'the opt-in state outlives its events');
  await store.close();
});

test('an export of one session holds nothing of another', async () => {
  const dir = tempDir();
  const store = await Store.open(dir);
  for (const [key, text] of [['alice', 'alice secret plan'], ['bob', 'bob private note']] as const) {
    await store.turns.put([key, 0], { sessionKey: key, turnIndex: 0, sampleId: key, createdAt: 1, weightVersion: 'base', action: { text, toolCalls: [] }, nextState: { toolResults: [] }, reward: null, hint: null });
  }
  await store.close();
  const out = (await runCli(dir, ['sessions', 'export', '--json', '--session', 'alice'])).stdout;
  assert.match(out, /alice secret plan/);
  assert.ok(!out.includes('bob'));
});

test('a version 1 store gets the run and call indexes and open-sample records at open, and a newer store is refused; sessions rm and retention remove index entries', async () => {
  const dir = tempDir();
  let store = await Store.open(dir);
  const now = Date.now();
  const old = now - 40 * 86_400_000;
  await store.appendEvents('c', [
    optIn(1, 's'),
    optIn(2, 'gone'),
    { kind: 'user.message', seq: 3, at: old, sessionKey: 's', runId: 'r1', content: 'ancient' },
    { kind: 'model.call', seq: 4, at: old, sessionKey: 's', runId: 'r1', callId: 'r1:1', provider: 'p', model: 'm', side: false },
    { kind: 'user.message', seq: 5, at: now, sessionKey: 's', runId: 'r2', content: 'recent' },
    { kind: 'user.message', seq: 6, at: now, sessionKey: 'gone', runId: 'r3', content: 'removed' },
  ]);
  await store.recordSample({ ...sample('old', 's', old), runId: 'r1' });
  await store.recordSample({ ...sample('new', 's', now), runId: 'r2' });
  const openRecord = store.openSamples.get('new');
  await store.close();
  // As version 1 left it: the same data, no indexes, and (early version 1) null open-sample records.
  const raw = open({ path: join(dir, 'store'), maxDbs: 32 });
  for (const name of ['runEvents', 'runSamples', 'callEvents', 'eventTimes', 'sampleTimes', 'openBySession']) await raw.openDB({ name }).clearAsync();
  await raw.openDB({ name: 'meta' }).put('schemaVersion', 1);
  for (const id of ['old', 'new', 'ghost']) await raw.openDB({ name: 'openSamples' }).put(id, null);
  await raw.close();
  store = await Store.open(dir);
  assert.equal(store.meta.get('schemaVersion'), SCHEMA_VERSION);
  assert.deepEqual(store.openSamples.get('new'), openRecord);
  assert.equal(store.openSamples.get('ghost'), undefined, 'an open entry without its sample is dropped');
  assert.deepEqual(store.openSamplesOf('s').map((o) => o.id), ['old', 'new'], 'the open samples are indexed by session');
  await new TurnAssembler({ store, log: createLogger('silent') }).assembleOnce();
  const contents = (runs: [string, string][]) => runs.map(([key, run]) => [...store.runEventsOf(key, run)].map((e) => (e.kind === 'user.message' ? e.content : e.kind)));
  assert.deepEqual(contents([['s', 'r1'], ['s', 'r2'], ['gone', 'r3']]), [['ancient', 'model.call'], ['recent'], ['removed']]);
  assert.deepEqual([...store.runSamplesOf('s', 'r1')].map((s) => s.id), ['old']);
  assert.equal(store.callLog('s', 'r1:1'), 4);
  await store.expireBefore(now - 30 * 86_400_000);
  await store.removeSession('gone');
  assert.deepEqual(contents([['s', 'r1'], ['s', 'r2'], ['gone', 'r3']]), [[], ['recent'], []]);
  assert.deepEqual([...store.runSamplesOf('s', 'r1')].map((s) => s.id), []);
  assert.equal(store.callLog('s', 'r1:1'), undefined);
  const { runEvents, runSamples, callEvents, eventTimes, sampleTimes, openBySession } = store.internalTables();
  const entries = [runEvents, runSamples, callEvents, eventTimes, sampleTimes, openBySession].map((db) => [...db.getKeys()].length);
  assert.deepEqual(entries, [1, 1, 0, [...store.events.getKeys()].length, [...store.samples.getKeys()].length, [...store.openSamples.getKeys()].length], 'no index entry outlives its event or sample');
  await store.meta.put('schemaVersion', SCHEMA_VERSION + 1);
  await store.close();
  await assert.rejects(Store.open(dir), new RegExp(`has schema version ${SCHEMA_VERSION + 1}; this clawrl understands ${SCHEMA_VERSION}`));
});

test('retention reads only what expired, in slices, and leaves every index matching what is kept; a version 4 store gets its indexes by time and kind at open', async () => {
  const dir = tempDir();
  let store = await Store.open(dir);
  const now = Date.now();
  const old = now - 40 * 86_400_000;
  const sessions = ['a', 'b', 'c'];
  // 5,000 old messages and 300 old samples (several slices of 500), among recent ones, out of time order.
  await store.appendEvents('c', sessions.map((key, i) => optIn(i + 1, key)));
  let seq = sessions.length;
  for (let batch = 0; batch < 10; batch++) {
    await store.appendEvents('c', Array.from({ length: 520 }, (_, i) => ({ kind: 'user.message' as const, seq: ++seq, at: i % 26 === 0 ? now - i : old + i, sessionKey: sessions[i % 3]!, runId: `r${batch}`, content: `m${seq}` })));
  }
  // Events of the kinds the passes find by index, one old and one recent.
  await store.appendEvents('c', [
    { kind: 'feedback', seq: ++seq, at: now, sessionKey: 'a', rating: 'good' },
    { kind: 'model.output', seq: ++seq, at: old, sessionKey: 'a', runId: 'r0', assistantTexts: ['hi'], toolCalls: [] },
  ]);
  for (let i = 0; i < 330; i++) await store.recordSample({ ...sample(`s${i}`, sessions[i % 3]!, i % 11 === 0 ? now : old + i), runId: `r${i % 10}` });
  const kept = { events: [...store.events.getRange()].filter(({ value }) => value.at >= now - 30 * 86_400_000).map(({ key }) => key), samples: [...store.samples.getRange()].filter(({ value }) => value.createdAt >= now - 30 * 86_400_000).map(({ key }) => key).sort() };
  assert.equal(kept.events.length, 201, 'the opt-ins (times from a counter) expire too');
  assert.equal(kept.samples.length, 30);
  await store.meta.put('schemaVersion', 4);
  await store.close();
  const raw = open({ path: join(dir, 'store'), maxDbs: 32 });
  for (const name of ['eventTimes', 'sampleTimes', 'eventKinds', 'openBySession']) await raw.openDB({ name }).clearAsync();
  await raw.close();
  store = await Store.open(dir);
  assert.equal(store.meta.get('schemaVersion'), SCHEMA_VERSION);
  const end = store.eventLogPosition();
  assert.deepEqual([...store.eventsOfKind('feedback', 0, end)].map((e) => e.seq), [seq - 1]);
  assert.deepEqual([...store.eventsOfKind('model.output', 0, end)].map((e) => e.seq), [seq]);

  // No walk of every event or sample: only the expired ones are read.
  const reads = { events: 0, samples: 0 };
  const walk = () => assert.fail('retention walked a whole table');
  const { events, samples } = store;
  const saved = { events: { get: events.get, getRange: events.getRange }, samples: { get: samples.get, getRange: samples.getRange } };
  Object.assign(events, { get: (log: number) => (reads.events++, saved.events.get.call(events, log)), getRange: walk });
  Object.assign(samples, { get: (id: string) => (reads.samples++, saved.samples.get.call(samples, id)), getRange: walk });
  const expired = await store.expireBefore(now - 30 * 86_400_000);
  Object.assign(events, saved.events);
  Object.assign(samples, saved.samples);
  assert.deepEqual(expired, { events: 5004, turns: 300 });
  assert.ok(reads.events <= 5004 && reads.samples <= 300, `each expired record read once: ${JSON.stringify(reads)}`);

  assert.deepEqual([...store.events.getKeys()], kept.events);
  assert.deepEqual([...store.samples.getKeys()].sort(), kept.samples);
  const { eventTimes, sampleTimes, eventKinds, runEvents, runSamples, openBySession } = store.internalTables();
  assert.deepEqual([...openBySession.getRange()].map(({ value }) => value).sort(), kept.samples, 'the index by session holds the kept open samples');
  assert.deepEqual([...eventKinds.getKeys()], [['feedback', end - 1]], 'the old model.output left its index too');
  assert.deepEqual([...eventTimes.getKeys()].map(([, log]) => log).sort((x, y) => x - y), kept.events);
  assert.deepEqual([...sampleTimes.getKeys()].map(([, id]) => id).sort(), kept.samples);
  assert.equal([...runEvents.getKeys()].length, 200, 'the run index holds the kept messages only');
  assert.equal([...runSamples.getKeys()].length, 30);
  assert.deepEqual(await store.expireBefore(now - 30 * 86_400_000), { events: 0, turns: 0 }, 'nothing left to expire');
  assert.ok(sessions.every((key) => store.isOptedIn(key)));
  await store.close();
});

test("sessions rm during a training step: the step's batch loses the session's turns, so a turn the session makes again under a reused key is not marked trained", async () => {
  const store = await Store.open(tempDir());
  const key = 'agent:main:main';
  let seq = 0;
  const assembler = new TurnAssembler({ store, log: createLogger('silent') });
  const score = { recipe: 'binary-rl', score: 1, votes: [1], source: 'rules' as const, hint: null, hintVotes: [], advantages: [1], mask: [1], failures: 0, scoredAt: Date.now() };
  /** A reply, the user's next message, and its turn scored trainable. */
  async function trainableTurn(id: string) {
    await store.recordSample({ id, sessionKey: key, runId: `r-${id}`, side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base', requestMessages: [], promptTokens: [1], responseTokens: [2], logprobs: [-1], text: `reply ${id}`, toolCalls: [], finishReason: 'stop' });
    await store.appendEvents('c', [userMessage(++seq, key, 'next')]);
    await assembler.assembleOnce();
    const turn = [...store.turnsOf(key)].find((t) => t.sampleId === id)!;
    await store.recordScore(turn, score, true);
    return turn;
  }
  await store.appendEvents('c', [optIn(++seq, key)]);
  const old = await trainableTurn('old');
  const batch = (await store.startBatch(16, (n) => `v${n}`))!;
  assert.deepEqual(batch.keys, [[key, old.turnIndex]]);
  await store.removeSession(key);
  assert.deepEqual(store.servingState().pendingBatch?.keys, [], 'the removed turn left the batch');
  // The chat goes on: the session is made again and numbers its turns from 0 again.
  await store.appendEvents('c', [optIn(++seq, key)]);
  const fresh = await trainableTurn('fresh');
  assert.equal(fresh.turnIndex, old.turnIndex);
  await store.finishBatch({ version: batch.version, parent: null, recipe: 'binary-rl', createdAt: Date.now(), turnIds: batch.keys.map(turnIdOf), metrics: {} });
  assert.deepEqual(store.version(batch.version)?.turnIds, [], 'the version does not name the removed turn');
  assert.equal(store.turn([key, fresh.turnIndex])?.trainedIn, undefined);
  assert.equal(store.trainQueueLength(), 1, 'the new turn still waits for training');
  await store.close();
});

test("sessions rm takes the session's turn ids out of every weight version, in the store and in the versions' clawrl.json, and no other session's", async () => {
  const dir = tempDir();
  const store = await Store.open(dir);
  await store.appendEvents('c', [optIn(1, 'agent:main:telegram:dm:42'), optIn(2, 'agent:main:telegram:dm:42#1')]);
  const turnIds = ['agent:main:telegram:dm:42#0', 'agent:main:telegram:dm:42#1#0', 'agent:main:telegram:dm:421#5', 'agent:main:telegram:dm:42#3'];
  const weights = new WeightsDir(weightsRoot(dir));
  for (const version of ['v000001', 'v000002']) {
    const record = { version, parent: null, recipe: 'binary-rl', createdAt: 1, turnIds, metrics: {} };
    await store.adoptVersion(record, 1, false);
    await weights.publish(record, async () => {});
  }
  await store.close();
  const { code, stdout, stderr } = await runCli(dir, ['sessions', 'rm', 'agent:main:telegram:dm:42']);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /removed session agent:main:telegram:dm:42 \(and its turn ids from the clawrl.json of 2 weight version\(s\)\)/);
  const kept = ['agent:main:telegram:dm:42#1#0', 'agent:main:telegram:dm:421#5'];
  const reopened = await Store.open(dir);
  try {
    for (const version of ['v000001', 'v000002']) {
      assert.deepEqual(reopened.version(version)?.turnIds, kept);
      assert.deepEqual(JSON.parse(readFileSync(join(weightsRoot(dir), version, 'clawrl.json'), 'utf8')).turnIds, kept);
    }
  } finally {
    await reopened.close();
  }
});
