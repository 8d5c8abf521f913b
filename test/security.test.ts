// Network security and limits: loopback by default, TLS (with the plugin trusting a custom CA),
// token rotation, connection and storage limits with clear errors and nothing lost; the data
// dir's files private to their owner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { Link } from '../plugin/link.ts';
import { WeightsDir } from '../daemon/weights.ts';
import type { WeightVersionRecord } from '../daemon/store.ts';
import { TestClient, optIn, spawnDaemon, tempDir, until, userMessage } from './helpers.ts';

const log = createLogger('silent');
const quiet = { info() {}, warn() {}, debug() {} };

/** A self-signed certificate for 127.0.0.1 (it is its own CA). */
function selfSigned(): { cert: Buffer; key: Buffer; certFile: string } {
  const dir = tempDir('clawrl-tls-');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')), certFile: join(dir, 'cert.pem') };
}

test('a non-loopback address needs TLS or --insecure', async () => {
  await assert.rejects(startDaemon({ dataDir: tempDir(), host: '0.0.0.0', port: 0, log }), /binding 0\.0\.0\.0 exposes the daemon beyond this machine: give --tls-cert and --tls-key, or --insecure/);
  const insecure = await startDaemon({ dataDir: tempDir(), host: '0.0.0.0', port: 0, log, insecure: true });
  assert.equal((await fetch(`http://127.0.0.1:${insecure.port}/healthz`)).status, 200);
  await insecure.close();
});

test('with TLS the plugin link connects over wss:// trusting a custom CA, and refuses without it', async () => {
  const tls = selfSigned();
  const daemon = await startDaemon({ dataDir: tempDir(), port: 0, log, tls: { cert: tls.cert, key: tls.key } });
  try {
    assert.match(daemon.wsUrl, /^wss:\/\/127\.0\.0\.1:\d+\/ws$/);
    const health = await new Promise<number>((resolve, reject) => {
      request(`${daemon.url}/healthz`, { ca: tls.cert }, (res) => resolve(res.statusCode!)).on('error', reject).end();
    });
    assert.equal(health, 200);

    const trusting = new Link({ url: daemon.wsUrl, token: daemon.token, ca: tls.cert.toString(), stateDir: tempDir(), logger: quiet, clientVersion: 't', spoolMaxEvents: 100, spoolMaxBytes: 1 << 20, minBackoffMs: 20, maxBackoffMs: 100 });
    trusting.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: 'tls' });
    trusting.enqueue({ kind: 'user.message', at: Date.now(), sessionKey: 'tls', content: 'over tls' });
    trusting.start();
    await until(() => trusting.status().acked >= 2, 'acks over wss', 15_000);
    await trusting.close();
    assert.deepEqual([...daemon.store.sessionEventsOf('tls')].map((e) => e.kind), ['session.optin', 'user.message']);

    const warnings: string[] = [];
    const doubting = new Link({ url: daemon.wsUrl, token: daemon.token, stateDir: tempDir(), logger: { ...quiet, warn: (m: string) => void warnings.push(m) }, clientVersion: 't', spoolMaxEvents: 100, spoolMaxBytes: 1 << 20, minBackoffMs: 20, maxBackoffMs: 100 });
    doubting.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: 'nope' });
    doubting.start();
    await until(() => /self[- ]signed|certificate/i.test(doubting.status().lastError ?? ''), 'a certificate error', 15_000);
    assert.equal(doubting.status().acked, 0);
    await doubting.close();
  } finally {
    await daemon.close();
  }
});

test('token rotation: the old token stops working at once and connected plugins are dropped', async () => {
  const dataDir = tempDir();
  const daemon = await startDaemon({ dataDir, port: 0, log });
  try {
    const old = daemon.token;
    const client = await TestClient.connect(daemon.wsUrl, old);
    await client.hello('rot');
    const closed = new Promise<number>((resolve) => client.socket.once('close', (code) => resolve(code)));
    const res = await fetch(`${daemon.url}/token/rotate`, { method: 'POST', headers: { authorization: `Bearer ${old}` } });
    assert.equal(res.status, 200);
    assert.equal(await closed, 1008);
    assert.notEqual(daemon.token, old);
    assert.equal(readFileSync(join(dataDir, 'token'), 'utf8').trim(), daemon.token);
    assert.equal((await fetch(`${daemon.url}/status`, { headers: { authorization: `Bearer ${old}` } })).status, 401);
    assert.equal((await fetch(`${daemon.url}/status`, { headers: { authorization: `Bearer ${daemon.token}` } })).status, 200);
  } finally {
    await daemon.close();
  }
});

test('connections over the limit are refused with 503 and a reason', async () => {
  const daemon = await startDaemon({ dataDir: tempDir(), port: 0, log, maxConnections: 2 });
  try {
    const a = await TestClient.connect(daemon.wsUrl, daemon.token);
    const b = await TestClient.connect(daemon.wsUrl, daemon.token);
    const third = new WebSocket(daemon.wsUrl, { headers: { authorization: `Bearer ${daemon.token}` } });
    const [status, body] = await new Promise<[number, string]>((resolve) => {
      third.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d) => (text += d)).on('end', () => resolve([res.statusCode!, text]));
      });
    });
    assert.equal(status, 503);
    assert.match(body, /too many plugin connections \(limit 2\)/);
    a.close();
    b.close();
  } finally {
    await daemon.close();
  }
});

test('a full store refuses new events with storage_full, keeps what it had, and keeps serving', async () => {
  const daemon = await startDaemon({ dataDir: tempDir(), port: 0, log, maxStoreBytes: 256 * 1024 });
  try {
    const client = await TestClient.connect(daemon.wsUrl, daemon.token);
    await client.hello('full');
    await client.sendEvents([optIn(1, 'big')]);
    let seq = 1;
    let acked = 1;
    let refusal: { code: string; message: string } | undefined;
    while (!refusal && seq < 5000) {
      const batch = Array.from({ length: 20 }, () => userMessage(++seq, 'big', 'x'.repeat(2000)));
      client.send({ type: 'events', events: batch });
      const reply = await client.next();
      if (reply.type === 'ack') acked = reply.seq;
      else if (reply.type === 'error') refusal = reply;
      await sleep(210); // the capacity check is cached for 200 ms
    }
    assert.ok(refusal, 'the store never filled');
    assert.equal(refusal.code, 'storage_full');
    assert.match(refusal.message, /at its maximum of 262144 bytes \(--max-store-mb\)/);
    // Everything acked is there, nothing beyond it, and the daemon still answers.
    const stored = [...daemon.store.sessionEventsOf('big')];
    assert.equal(stored.length, acked);
    assert.equal(daemon.store.ackedSeq('full'), acked);
    assert.equal((await fetch(`${daemon.url}/status`, { headers: { authorization: `Bearer ${daemon.token}` } })).status, 200);
    // The connection was closed so that later batches cannot overtake the refused one.
    await until(() => client.socket.readyState === WebSocket.CLOSED, 'the connection to close', 15_000);
  } finally {
    await daemon.close();
  }
});

test('opting in more sessions than --max-sessions is refused with a clear error; the others go on', async () => {
  const daemon = await startDaemon({ dataDir: tempDir(), port: 0, log, maxSessions: 2 });
  try {
    const client = await TestClient.connect(daemon.wsUrl, daemon.token);
    await client.hello('many');
    const acked = await client.sendEvents([optIn(1, 'one'), optIn(2, 'two'), optIn(3, 'three'), userMessage(4, 'three', 'not kept'), userMessage(5, 'one', 'kept')]);
    assert.equal(acked, 5);
    const refusal = await client.next((m) => m.type === 'error');
    assert.deepEqual(refusal.type === 'error' && refusal.code, 'limit_reached');
    assert.match((refusal as { message: string }).message, /session three is not stored: the daemon keeps at most 2 sessions \(--max-sessions\)/);
    assert.deepEqual(daemon.store.listSessions().map((s) => s.sessionKey).sort(), ['one', 'two']);
    assert.equal([...daemon.store.sessionEventsOf('one')].length, 2);
    client.close();
  } finally {
    await daemon.close();
  }
});

/** The data dir ('.') and every folder and file under it with its permission bits, links left out. */
function modesUnder(dir: string): Map<string, number> {
  const modes = new Map<string, number>([['.', statSync(dir).mode & 0o777]]);
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const stat = lstatSync(join(dir, name));
    if (!stat.isSymbolicLink()) modes.set(name, stat.mode & 0o777);
  }
  return modes;
}

test('the data dir is private whatever existed: folders 0700, files 0600, and a half-written version is removed', async () => {
  const dir = tempDir();
  // A first run makes the store: private from the start.
  let d = await spawnDaemon(dir);
  await d.stop();
  for (const [path, mode] of modesUnder(dir)) assert.equal(mode, statSync(join(dir, path)).isDirectory() ? 0o700 : 0o600, path);
  assert.equal(statSync(join(dir, 'store', 'data.mdb')).mode & 0o777, 0o600);

  // As an older clawrl or a data dir made by hand left it: 0755 folders, 0644 files, and a
  // version folder a killed daemon was writing.
  mkdirSync(join(dir, 'weights', 'v000001'), { recursive: true });
  writeFileSync(join(dir, 'weights', 'v000001', 'adapter_config.json'), '{}');
  mkdirSync(join(dir, 'weights', '.tmp-v000002-999999999'));
  writeFileSync(join(dir, 'weights', '.tmp-v000002-999999999', 'adapter_model.safetensors'), 'half');
  symlinkSync('/etc/hostname', join(dir, 'a-link'));
  for (const [path] of modesUnder(dir)) chmodSync(join(dir, path), statSync(join(dir, path)).isDirectory() ? 0o755 : 0o644);
  const linkTarget = statSync('/etc/hostname').mode & 0o777;

  d = await spawnDaemon(dir);
  try {
    const modes = modesUnder(dir);
    assert.ok(modes.has(join('store', 'lock.mdb')) && modes.has(join('weights', 'v000001', 'adapter_config.json')) && modes.has('token'));
    for (const [path, mode] of modes) assert.equal(mode, statSync(join(dir, path)).isDirectory() ? 0o700 : 0o600, path);
    assert.equal(existsSync(join(dir, 'weights', '.tmp-v000002-999999999')), false);
    // A link is not followed.
    assert.equal(statSync('/etc/hostname').mode & 0o777, linkTarget);
  } finally {
    await d.stop();
  }
});

test('weight versions are written 0700/0600, and only temp folders no live process is writing are removed (logged)', async () => {
  const root = join(tempDir(), 'weights');
  const live = spawn('sleep', ['30']);
  try {
    mkdirSync(join(root, `.tmp-v000007-${live.pid}`), { recursive: true });
    mkdirSync(join(root, '.tmp-v000008-999999999'));
    mkdirSync(join(root, `.tmp-v000009-${process.pid}`));
    const warnings: Record<string, unknown>[] = [];
    const weights = new WeightsDir(root, { ...createLogger('silent'), warn: (_msg, fields) => void warnings.push(fields!) });
    assert.deepEqual(readdirSync(root), [`.tmp-v000007-${live.pid}`]);
    assert.deepEqual(warnings.map((w) => w.folder).sort(), [join(root, '.tmp-v000008-999999999'), join(root, `.tmp-v000009-${process.pid}`)]);

    const record = { version: 'v000001', parent: null, recipe: 'binary-rl', createdAt: 1, turnIds: [], metrics: {} } as unknown as WeightVersionRecord;
    // A writer that leaves its files world-readable, as a worker with the default umask would.
    const dir = await weights.publish(record, async (tmp) => writeFileSync(join(tmp, 'adapter_model.safetensors'), 'weights', { mode: 0o644 }));
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const name of readdirSync(dir)) assert.equal(statSync(join(dir, name)).mode & 0o777, 0o600, name);
    assert.deepEqual(readdirSync(dir).sort(), ['adapter_model.safetensors', 'clawrl.json']);
  } finally {
    live.kill();
  }
});
