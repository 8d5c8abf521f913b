import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import WebSocket from 'ws';
import { encode } from '../protocol/index.ts';
import { Store } from '../daemon/store.ts';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { TestClient, optIn, runCli, spawnDaemon, tempDir, userMessage, type DaemonProcess } from './helpers.ts';

const running: DaemonProcess[] = [];
after(async () => {
  for (const d of running) await d.stop('SIGKILL');
});

async function daemonIn(dataDir: string, args: string[] = []) {
  const d = await spawnDaemon(dataDir, args);
  running.push(d);
  const token = (await runCli(dataDir, ['token'])).stdout.trim();
  return { ...d, token };
}

test('the token file is created with mode 0600 and /healthz needs no token', async () => {
  const dir = tempDir();
  const d = await daemonIn(dir);
  assert.equal(statSync(join(dir, 'token')).mode & 0o777, 0o600);
  assert.ok(d.token.length >= 32);
  const res = await fetch(`${d.url}/healthz`);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { ok: boolean }).ok, true);
  await d.stop();
});

test('no token or a wrong token gets 401 on the WebSocket upgrade and on HTTP', async () => {
  const dir = tempDir();
  const d = await daemonIn(dir);
  const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${d.token}x` }, { authorization: d.token }];
  for (const headers of attempts) {
    const socket = new WebSocket(d.wsUrl, { headers });
    const status = await new Promise<number>((resolve, reject) => {
      socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      socket.on('open', () => reject(new Error('connected without a valid token')));
      socket.on('error', () => {});
    });
    assert.equal(status, 401);
    const res = await fetch(`${d.url}/status`, { headers });
    assert.equal(res.status, 401);
  }
  assert.equal((await fetch(`${d.url}/status`, { headers: { authorization: `Bearer ${d.token}` } })).status, 200);
  await d.stop();
});

test('bad frames get an error frame; a bad event is refused alone; stored data survives', async () => {
  const dir = tempDir();
  const d = await daemonIn(dir, ['--log-level', 'silent']);
  let client = await TestClient.connect(d.wsUrl, d.token);
  await client.hello('bad-frames');
  assert.equal(await client.sendEvents([optIn(1, 's'), userMessage(2, 's', 'kept')]), 2);

  // Frames that cannot carry events: an error each, and the connection stays up.
  for (const [frame, expected] of [
    ['a text frame', /text frame/],
    [encode({ type: 'ack', seq: 5 }), /may not send ack/],
  ] as const) {
    client.sendRaw(frame);
    const reply = await client.next();
    assert.equal(reply.type, 'error');
    assert.match((reply as { message: string }).message, expected);
  }

  // Unreadable frames that may have held events: an error, then the connection closes, so that no
  // later ack can claim their events durable; the client reconnects and resends.
  for (const [frame, expected] of [
    [new Uint8Array([0xc1, 0x00, 0xff]), /not valid msgpack/],
    [encode({ type: 'events', events: [userMessage(3, 's')] }).subarray(0, 20), /not valid msgpack/],
    [new Uint8Array(9 * 1024 * 1024), /exceeds the limit/],
    [encode({ type: 'events', events: [{ kind: 'user.message', seq: 'three', at: 1, sessionKey: 's', content: 'x' } as never] }), /events\[0\]\.seq must be a non-negative integer/],
  ] as const) {
    client.sendRaw(frame);
    const reply = await client.next();
    assert.equal(reply.type, 'error');
    assert.match((reply as { message: string }).message, expected);
    await once(client.socket, 'close');
    client = await TestClient.connect(d.wsUrl, d.token);
    assert.equal((await client.hello('bad-frames')).ackedSeq, 2);
  }

  // A batch with bad events: those are named in the ack and not stored; the rest is stored.
  client.send({
    type: 'events',
    events: [
      userMessage(3, 's', 'good before'),
      { kind: 'user.message', seq: 4, at: 1, sessionKey: 's', content: 42 } as never,
      { ...userMessage(5, 's', 'long run id'), runId: 'r'.repeat(3000) },
      userMessage(6, 's', 'good after'),
    ],
  });
  const ack = await client.next((m) => m.type === 'ack');
  assert.equal(ack.type === 'ack' && ack.seq, 6);
  const rejected = ack.type === 'ack' ? ack.rejected ?? [] : [];
  assert.deepEqual(rejected.map((r) => r.seq), [4, 5]);
  assert.match(rejected[0]!.reason, /events\[1\]\(user.message\)\.content must be a string/);
  assert.match(rejected[1]!.reason, /runId is 3000 bytes long, over the limit of 512 bytes/);
  assert.equal(await client.sendEvents([userMessage(7, 's', 'after')]), 7);
  client.close();
  await d.stop();
  const out = await runCli(dir, ['sessions', 'show', 's']);
  const shown = JSON.parse(out.stdout) as { events: { content?: string }[] };
  assert.deepEqual(shown.events.map((e) => e.content).filter(Boolean), ['kept', 'good before', 'good after', 'after']);
});

test('events acked before kill -9 survive a restart; replays are not stored twice', async () => {
  const dir = tempDir();
  let d = await daemonIn(dir);
  let client = await TestClient.connect(d.wsUrl, d.token);
  assert.equal((await client.hello('k9')).ackedSeq, 0);
  const batch = [optIn(1, 'sk'), ...Array.from({ length: 99 }, (_, i) => userMessage(i + 2, 'sk'))];
  assert.equal(await client.sendEvents(batch), 100);
  await d.stop('SIGKILL');

  d = await daemonIn(dir);
  client = await TestClient.connect(d.wsUrl, d.token);
  assert.equal((await client.hello('k9')).ackedSeq, 100, 'welcome reports what is durable');
  // The plugin resends a window that overlaps what was acked: only the new events are stored.
  assert.equal(await client.sendEvents([...batch.slice(90), userMessage(101, 'sk'), userMessage(102, 'sk')]), 102);
  client.close();
  await d.stop();

  const store = await Store.open(dir);
  try {
    const contents = [...store.sessionEventsOf('sk')].map((e) => (e.kind === 'user.message' ? e.content : e.kind));
    assert.deepEqual(contents, ['session.optin', ...Array.from({ length: 101 }, (_, i) => `message ${i + 2}`)]);
    assert.equal(store.counters().duplicates, 10);
  } finally {
    await store.close();
  }
});

test('a session that did not opt in stores nothing; its events are acked and counted', async () => {
  const dir = tempDir();
  const d = await startDaemon({ dataDir: dir, port: 0, log: createLogger('silent') });
  try {
    const client = await TestClient.connect(d.wsUrl, d.token);
    await client.hello('privacy');
    const acked = await client.sendEvents([
      userMessage(1, 'private', 'secret stuff'),
      optIn(2, 'shared'),
      userMessage(3, 'shared', 'fine'),
      { kind: 'session.optout', seq: 4, at: 1, sessionKey: 'shared' },
      userMessage(5, 'shared', 'after opt-out'),
    ]);
    assert.equal(acked, 5);
    client.close();
    assert.equal(d.store.sessions.get('private'), undefined);
    assert.deepEqual(
      [...d.store.sessionEventsOf('shared')].map((e) => e.kind),
      ['session.optin', 'user.message', 'session.optout'],
    );
    assert.equal(d.store.counters().droppedNotOptedIn, 2);
    const text = JSON.stringify([...d.store.events.getRange()]);
    assert.ok(!text.includes('secret stuff') && !text.includes('after opt-out'));
  } finally {
    await d.close();
  }
});

test('sessions list, export and rm work on the stored data', async () => {
  const dir = tempDir();
  const store = await Store.open(dir);
  await store.appendEvents('c', [optIn(1, 'a'), userMessage(2, 'a'), optIn(3, 'b')]);
  await store.turns.put(['a', 0], {
    sessionKey: 'a',
    turnIndex: 0,
    sampleId: 'x',
    createdAt: Date.UTC(2026, 10, 26),
    weightVersion: 'base',
    action: { text: 'ran it', toolCalls: [{ id: 'c1', name: 'exec', arguments: '{}' }] },
    nextState: { toolResults: [{ toolCallId: 'c1', toolName: 'exec', exitCode: 2, isError: true, output: 'boom' }] },
    reward: -1,
    hint: null,
  });
  await store.close();

  const listed = (await runCli(dir, ['sessions', 'list', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(listed.map((s) => [s.sessionKey, s.optedIn, s.turns]), [['a', true, 1], ['b', true, 0]]);

  const exported = (await runCli(dir, ['sessions', 'export', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(exported, [
    {
      sessionKey: 'a',
      turnIndex: 0,
      action: { text: 'ran it', toolCalls: [{ id: 'c1', name: 'exec', arguments: '{}' }] },
      nextState: { toolResults: [{ toolCallId: 'c1', toolName: 'exec', exitCode: 2, isError: true, output: 'boom' }] },
      reward: -1,
      hint: null,
      weightVersion: 'base',
      createdAt: '2026-11-26T00:00:00.000Z',
    },
  ]);

  assert.equal((await runCli(dir, ['sessions', 'rm', 'a'])).code, 0);
  const missing = await runCli(dir, ['sessions', 'rm', 'a']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no session "a"/);
  assert.equal((await runCli(dir, ['sessions', 'export', '--json'])).stdout, '');
  const reopened = await Store.open(dir);
  assert.equal([...reopened.sessionEventsOf('a')].length, 0);
  assert.equal([...reopened.sessionEventsOf('b')].length, 1);
  await reopened.close();
});

test('status reports a running daemon and a stopped one', async () => {
  const dir = tempDir();
  const d = await daemonIn(dir);
  const up = JSON.parse((await runCli(dir, ['status', '--json'])).stdout);
  assert.equal(up.running, true);
  assert.equal(up.weightVersion, 'base');
  const stopped = await runCli(dir, ['stop']);
  assert.match(stopped.stdout, /stopped clawrl daemon/);
  const down = await runCli(dir, ['status', '--json']);
  assert.equal(down.code, 1);
  assert.deepEqual(JSON.parse(down.stdout), { running: false });
  await d.stop();
});

test('a queued batch is stored only if the batch before it was (afterSeq)', async () => {
  const store = await Store.open(tempDir());
  try {
    assert.equal((await store.appendEvents('q', [optIn(1, 's'), userMessage(2, 's')], 0))?.ackedSeq, 2);
    // As if the batch 3..4 had been refused: 5..6 was queued expecting acked seq 4.
    assert.equal(await store.appendEvents('q', [userMessage(5, 's'), userMessage(6, 's')], 4), null);
    assert.equal(store.ackedSeq('q'), 2);
    assert.equal([...store.sessionEventsOf('s')].length, 2, 'nothing of the refused batch was written');
    assert.equal((await store.appendEvents('q', [userMessage(3, 's')], 2))?.ackedSeq, 3);
  } finally {
    await store.close();
  }
});
