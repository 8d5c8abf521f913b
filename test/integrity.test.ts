// Integrity under hostile input: a batch is stored whole or not at all; a bad event is refused
// alone, named, and never mixes sessions; whatever is stored is listed and deletable; requests
// naming another host (DNS rebinding) are refused. Property tests drive the real store and a real
// daemon over WebSocket and HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { request } from 'node:http';
import WebSocket from 'ws';
import { MAX_ID_BYTES, type Event } from '../protocol/index.ts';
import { SessionLimitError, Store, type SampleRecord } from '../daemon/store.ts';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { TestClient, optIn, runCli, tempDir } from './helpers.ts';

const log = createLogger('silent');

/** Every entry of every table, as text: equal snapshots mean nothing was written. */
function snapshot(store: Store): string {
  const tables = [store.meta, store.sessions, store.events, store.samples, store.sessionSamples, store.openSamples, ...Object.values(store.internalTables())];
  return JSON.stringify(tables.map((db) => [...db.getRange()].map(({ key, value }) => [key, value])));
}

const sessionKeys = ['agent:main:a', 'agent:main:b', 'agent:main:c'];
/** A valid event of one of three sessions, with run and call ids that become index keys. */
const validEvent = fc.record({
  session: fc.integer({ min: 0, max: 2 }),
  kind: fc.constantFrom('user.message', 'model.call', 'tool.result'),
  run: fc.integer({ min: 0, max: 3 }),
  text: fc.string({ maxLength: 40 }),
});

function eventOf(e: { session: number; kind: string; run: number; text: string }, seq: number): Event {
  const base = { seq, at: seq, sessionKey: sessionKeys[e.session]!, runId: `run-${e.run}` };
  if (e.kind === 'model.call') return { ...base, kind: 'model.call', callId: `run-${e.run}:model:${seq}`, provider: 'p', model: 'm', side: false };
  if (e.kind === 'tool.result') return { ...base, kind: 'tool.result', toolCallId: `call-${seq}`, toolName: 'exec', output: e.text, isError: false };
  return { ...base, kind: 'user.message', content: e.text };
}

test('store: a batch that fails anywhere leaves no trace, and the next batch is stored whole', async () => {
  const store = await Store.open(tempDir('clawrl-integrity-'));
  await store.appendEvents('c', sessionKeys.map((key, i) => optIn(i + 1, key)));
  let seq = sessionKeys.length;
  let runs = 0;
  // Fault injection on the real store: the k-th index write of the next batch throws, as a full
  // disk or an LMDB error would in the middle of a transaction.
  const { runEvents } = store.internalTables();
  const put = runEvents.put.bind(runEvents);
  let failAt = 0;
  runEvents.put = ((...args: Parameters<typeof put>) => {
    if (failAt > 0 && --failAt === 0) throw new Error('injected write failure');
    return put(...args);
  }) as typeof put;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(validEvent, { minLength: 1, maxLength: 12 }), fc.nat(), fc.constantFrom('runId', 'callId', 'sessionKey', 'write'), async (batch, at, fault) => {
        runs++;
        const events = batch.map((e) => eventOf(e, ++seq));
        const i = at % events.length;
        const poisoned = [...events];
        if (fault === 'write') failAt = i + 1;
        // Else one event with an id too long for an LMDB key (the protocol refuses it; the store must too).
        else poisoned[i] = { ...poisoned[i]!, kind: 'model.call', callId: 'c', provider: 'p', model: 'm', side: false, [fault]: 'x'.repeat(3000) } as Event;
        const before = snapshot(store);
        await assert.rejects(store.appendEvents('c', poisoned), fault === 'write' ? /injected/ : /3000 bytes long/);
        failAt = 0;
        assert.equal(snapshot(store), before, 'a failed batch left writes behind');

        const result = await store.appendEvents('c', events);
        assert.equal(result?.stored, events.length);
        assert.equal(store.ackedSeq('c'), seq);
        // Each event is stored once, under its own session and run.
        for (const event of events) {
          const stored = [...store.runEventsOf(event.sessionKey, event.runId!)].filter((s) => s.seq === event.seq && s.clientId === 'c');
          assert.equal(stored.length, 1);
          assert.equal(stored[0]!.sessionKey, event.sessionKey);
        }
      }),
      { numRuns: 60 },
    );
    assert.equal(runs, 60);
    for (const key of sessionKeys) {
      for (const e of store.sessionEventsOf(key)) assert.equal(e.sessionKey, key);
    }
    assert.equal(store.counters().eventsStored, seq);
  } finally {
    await store.close();
  }
});

test('daemon: any batch with bad events stores its good ones once, under their own sessions, and names the bad ones', async () => {
  const daemon = await startDaemon({ dataDir: tempDir('clawrl-integrity-'), port: 0, log });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  await client.hello('props');
  await client.sendEvents(sessionKeys.map((key, i) => optIn(i + 1, key)));
  let seq = sessionKeys.length;
  const expected = new Map<string, number[]>(sessionKeys.map((k) => [k, []]));
  const badFields: [string, unknown][] = [
    ['runId', 'r'.repeat(MAX_ID_BYTES + 1)],
    ['sessionKey', 'é'.repeat(300)],
    ['sessionKey', ''],
    ['runId', 42],
    ['kind', 'explode'],
    ['at', 'yesterday'],
  ];
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(validEvent, fc.option(fc.integer({ min: 0, max: badFields.length - 1 }), { freq: 3 })), { minLength: 1, maxLength: 10 }), async (batch) => {
        const bad = new Set<number>();
        const events = batch.map(([e, b]) => {
          const event = eventOf(e, ++seq) as unknown as Record<string, unknown>;
          if (b === null) {
            expected.get(event.sessionKey as string)!.push(event.seq as number);
            return event;
          }
          bad.add(event.seq as number);
          const [field, value] = badFields[b]!;
          return { ...event, [field]: value };
        });
        client.send({ type: 'events', events: events as unknown as Event[] });
        const ack = await client.next((m) => m.type === 'ack' || m.type === 'error');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        if (ack.type !== 'ack') return;
        assert.equal(ack.seq, seq);
        assert.deepEqual(new Set((ack.rejected ?? []).map((r) => r.seq)), bad);
        for (const r of ack.rejected ?? []) assert.match(r.reason, /^events\[\d+\]/);
      }),
      { numRuns: 80 },
    );
    for (const key of sessionKeys) {
      const stored = [...daemon.store.sessionEventsOf(key)].filter((e) => e.kind !== 'session.optin');
      assert.deepEqual(stored.map((e) => e.seq), expected.get(key));
      for (const e of stored) assert.equal(e.sessionKey, key);
      assert.equal(daemon.store.sessions.get(key)!.events, stored.length + 1);
    }
  } finally {
    client.close();
    await daemon.close();
  }
});

function sample(sessionKey: string, id: string): Omit<SampleRecord, 'ordinal' | 'logMark'> {
  return {
    id, sessionKey, side: false, createdAt: Date.now(), model: 'm', weightVersion: 'base', requestMessages: [{ role: 'user', content: 'hi' }],
    promptTokens: [1], responseTokens: [2], logprobs: [-1], text: 'hello', toolCalls: [], finishReason: 'stop',
  };
}

test('a sample served for a session with no record creates it: listed, counted by --max-sessions, deletable', async () => {
  const dataDir = tempDir('clawrl-integrity-');
  const store = await Store.open(dataDir, { maxSessions: 2 });
  try {
    await store.recordSample(sample('agent:main:via-header', 's1'));
    assert.deepEqual(store.listSessions().map((s) => [s.sessionKey, s.optedIn]), [['agent:main:via-header', true]]);
    await store.recordSample(sample('agent:main:second', 's2'));
    await assert.rejects(store.recordSample(sample('agent:main:third', 's3')), SessionLimitError);
    // The status counters are kept as sessions come and go, in and out.
    await store.appendEvents('c', [
      { kind: 'session.optout', seq: 1, at: 1, sessionKey: 'agent:main:second' },
      { kind: 'session.optin', seq: 2, at: 2, sessionKey: 'agent:main:second' },
      { kind: 'session.optout', seq: 3, at: 3, sessionKey: 'agent:main:second' },
    ]);
    assert.deepEqual([store.sessionCount(), store.optedInCount()], [2, 1]);
    assert.equal(store.samples.get('s3'), undefined);
    await assert.rejects(store.recordSample({ ...sample('agent:main:second', 's4'), runId: 'r'.repeat(3000) }), /run id is 3000 bytes long, over the limit of 512 bytes/);
    assert.equal(store.samples.get('s4'), undefined);
  } finally {
    await store.close();
  }
  const removed = await runCli(dataDir, ['sessions', 'rm', 'agent:main:via-header']);
  assert.equal(removed.code, 0, removed.stderr);
  const reopened = await Store.open(dataDir);
  try {
    assert.deepEqual([reopened.sessionCount(), reopened.optedInCount()], [1, 0]);
    assert.equal(reopened.samples.get('s1'), undefined);
    assert.deepEqual(reopened.listSessions().map((s) => s.sessionKey), ['agent:main:second']);
  } finally {
    await reopened.close();
  }
});

/** A raw request with a chosen Host header (fetch does not let one set it). */
function get(daemon: Daemon, path: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: daemon.port, path, method: path.startsWith('/hints/') ? 'DELETE' : 'GET', headers: { host, authorization: `Bearer ${daemon.token}` } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('requests naming another host are refused (DNS rebinding); malformed URLs get a 400; read-only routes refuse other methods', async () => {
  const daemon = await startDaemon({ dataDir: tempDir('clawrl-integrity-'), port: 0, log });
  try {
    for (const host of [`127.0.0.1:${daemon.port}`, `localhost:${daemon.port}`, `[::1]:${daemon.port}`, 'localhost']) {
      assert.equal((await get(daemon, '/status', host)).status, 200, host);
    }
    for (const host of [`evil.example:${daemon.port}`, 'attacker.test', `127.0.0.1.nip.io:${daemon.port}`]) {
      const res = await get(daemon, '/status', host);
      assert.equal(res.status, 403, host);
      assert.match(res.body, /is not this daemon's/);
    }
    const ws = new WebSocket(daemon.wsUrl, { headers: { authorization: `Bearer ${daemon.token}`, host: 'evil.example' } });
    const refused = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode!)));
    assert.equal(refused, 403);

    for (const path of ['/status', '/healthz']) {
      const res = await fetch(`${daemon.url}${path}`, { method: 'DELETE', headers: { authorization: `Bearer ${daemon.token}` } });
      assert.equal(res.status, 405, path);
    }
    const bad = await get(daemon, '/hints/%', `127.0.0.1:${daemon.port}`);
    assert.equal(bad.status, 400);
    assert.match(bad.body, /percent-encoding/);
  } finally {
    await daemon.close();
  }
});
