// The plugin's link and spool against a real daemon: events survive a daemon that closes
// mid-stream and comes back on the same data dir, arrive exactly once and in order; the spool's
// bound drops the oldest events with a counter; seq resumes after a restart of the link.
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, cpSync, readFileSync, readlinkSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { encode, type Event, type HintsSnapshot } from '../protocol/index.ts';
import { Link, installIdOf } from '../plugin/link.ts';
import { installSuffix } from '../daemon/installs.ts';
import { readTurnHeaders } from '../daemon/api.ts';
import type { IncomingMessage } from 'node:http';
import { describeLink } from '../plugin/commands.ts';
import { LOCK_HEARTBEAT_MS, LOCK_STALE_MS, Spool, claimSpoolDir, type NewEvent } from '../plugin/spool.ts';
import { tempDir, until } from './helpers.ts';
import { Store } from '../daemon/store.ts';

const quiet = { info() {}, warn() {}, debug() {} };

function recordingLogger() {
  const warnings: string[] = [];
  return { warnings, info() {}, warn: (m: string) => void warnings.push(m) };
}

function userMessage(sessionKey: string, i: number): NewEvent {
  return { kind: 'user.message', at: Date.now(), sessionKey, content: `message ${i}` };
}

function storedContents(daemon: Daemon, sessionKey: string): string[] {
  return [...daemon.store.sessionEventsOf(sessionKey)].filter((e) => e.kind === 'user.message').map((e) => (e as { content: string }).content);
}

function newLink(url: string, token: string, stateDir: string, spoolMaxEvents = 100_000) {
  return new Link({ url, token, stateDir, logger: quiet, clientVersion: 'test', spoolMaxEvents, spoolMaxBytes: 64 * 1024 * 1024, minBackoffMs: 20, maxBackoffMs: 200 });
}

test('events reach the daemon exactly once and in order across a daemon restart mid-stream', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const stateDir = tempDir('clawrl-link-state-');
  let daemon = await startDaemon({ dataDir, token: 'secret' });
  const { port, wsUrl } = daemon;
  const link = newLink(wsUrl, 'secret', stateDir);
  const sessionKey = 'agent:main:link';
  try {
    link.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey });
    link.start();
    const total = 600;
    for (let i = 0; i < total; i++) {
      link.enqueue(userMessage(sessionKey, i));
      if (i === 200) {
        // Mid-stream: the daemon goes away while events keep coming, then returns on the same data dir.
        await until(() => link.status().acked > 0, 'some events acked', 15_000);
        await daemon.close();
        await until(() => link.status().state !== 'connected', 'link notices', 15_000);
      }
      if (i === 400) daemon = await startDaemon({ dataDir, token: 'secret', port });
      if (i % 50 === 0) await sleep(5);
    }
    await until(() => link.status().pending === 0 && link.status().ackedSeq === total + 1, 'all acked', 15_000);
    const contents = storedContents(daemon, sessionKey);
    assert.deepEqual(contents, Array.from({ length: total }, (_, i) => `message ${i}`));
    assert.equal(link.status().dropped, 0);
  } finally {
    await link.close();
    await daemon.close();
  }
});

test('a restarted link resumes its seq and sends what it spooled while the daemon was down', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const stateDir = tempDir('clawrl-link-state-');
  const daemon = await startDaemon({ dataDir, token: 'secret' });
  const sessionKey = 'agent:main:resume';
  try {
    // First life: no daemon reachable (wrong port), so everything stays in the spool.
    const offline = newLink('ws://127.0.0.1:9/ws', 'secret', stateDir);
    offline.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey });
    for (let i = 0; i < 5; i++) offline.enqueue(userMessage(sessionKey, i));
    offline.start();
    const firstId = offline.clientId;
    await offline.close();
    assert.equal(offline.status().lastSeq, 6);

    // Second life, same state dir: same client id, seq continues, the spool is sent.
    const link = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      assert.equal(link.clientId, firstId);
      assert.equal(link.status().pending, 6);
      const next = link.enqueue(userMessage(sessionKey, 5));
      assert.equal(next?.seq, 7);
      link.start();
      await until(() => link.status().pending === 0, 'all acked', 15_000);
      assert.deepEqual(storedContents(daemon, sessionKey), ['message 0', 'message 1', 'message 2', 'message 3', 'message 4', 'message 5']);
      assert.equal(daemon.store.ackedSeq(firstId), 7);
    } finally {
      await link.close();
    }

    // Third life after everything was acked and compacted away: seq still continues.
    const third = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      assert.equal(third.status().pending, 0);
      assert.equal(third.enqueue(userMessage(sessionKey, 6))?.seq, 8);
    } finally {
      await third.close();
    }
  } finally {
    await daemon.close();
  }
});

test("a full spool keeps each session's last opt-in or opt-out, so the daemon still stores the session's kept events", async () => {
  const dir = tempDir('clawrl-spool-');
  const logger = recordingLogger();
  const spool = new Spool(dir, { maxEvents: 5, maxBytes: 1 << 30, logger });
  const optIn = (sessionKey: string): NewEvent => ({ kind: 'session.optin', at: Date.now(), sessionKey });
  spool.append(optIn('a')); // seq 1
  for (let i = 0; i < 6; i++) spool.append(userMessage('a', i)); // 2..7
  spool.append(optIn('b')); // 8
  spool.append({ kind: 'session.optout', at: Date.now(), sessionKey: 'b' }); // 9
  for (let i = 0; i < 6; i++) spool.append(userMessage('a', 6 + i)); // 10..15
  await spool.flush();
  const kept = spool.durableAfter(0, 1 << 30, 100);
  // a's opt-in and b's opt-out (its last) stay, in order, ahead of the newest events, within the bound.
  assert.deepEqual(kept.map((e) => e.seq), [1, 9, 13, 14, 15]);
  assert.ok(logger.warnings.some((w) => /kept 2 opt-in or opt-out event\(s\)/.test(w)), logger.warnings.join('\n'));
  await spool.close();

  // What the daemon makes of them: all of a's kept messages stored, none dropped as not opted in.
  const store = await Store.open(tempDir());
  try {
    const result = await store.appendEvents('client', kept);
    assert.deepEqual([result?.stored, result?.dropped], [5, 0]);
    assert.equal([...store.sessionEventsOf('a')].filter((e) => e.kind === 'user.message').length, 3);
  } finally {
    await store.close();
  }
});

test('a full spool drops the oldest events, counts and logs them', async () => {
  const dir = tempDir('clawrl-spool-');
  const logger = recordingLogger();
  const spool = new Spool(dir, { maxEvents: 10, maxBytes: 1 << 30, logger });
  for (let i = 0; i < 25; i++) spool.append(userMessage('s', i));
  await spool.flush();
  const stats = spool.stats();
  assert.equal(stats.pending, 10);
  assert.equal(stats.dropped, 15);
  assert.ok(logger.warnings.some((w) => /dropped the oldest/.test(w)));
  assert.deepEqual(
    spool.durableAfter(0, 1 << 30, 100).map((e) => e.seq),
    Array.from({ length: 10 }, (_, i) => 16 + i),
  );
  await spool.close();

  // The bound holds after a reopen too, and the byte bound drops the oldest the same way.
  const reopened = new Spool(dir, { maxEvents: 10, maxBytes: 1 << 30, logger: quiet });
  assert.deepEqual(
    reopened.durableAfter(0, 1 << 30, 100).map((e) => e.seq),
    Array.from({ length: 10 }, (_, i) => 16 + i),
  );
  const oneFrame = readFileSync(join(dir, 'spool.bin')).length / 10;
  reopened.setBounds(10, Math.ceil(oneFrame * 3.5));
  assert.equal(reopened.stats().pending, 3);
  assert.equal(reopened.stats().dropped, 7);
  await reopened.close();
});

test('the spool survives a torn write and only hands out durable events', async () => {
  const dir = tempDir('clawrl-spool-');
  const spool = new Spool(dir, { maxEvents: 100, maxBytes: 1 << 30, logger: quiet, flushDelayMs: 10_000 });
  spool.append(userMessage('s', 0));
  // Not yet written: nothing may be sent, or the daemon could hold an event this client forgets.
  assert.equal(spool.durableAfter(0, 1 << 30, 100).length, 0);
  await spool.flush();
  assert.equal(spool.durableAfter(0, 1 << 30, 100).length, 1);
  spool.append(userMessage('s', 1));
  await spool.close();

  // A crash in the middle of a frame leaves a torn tail: it is ignored and overwritten.
  appendFileSync(join(dir, 'spool.bin'), Buffer.from([200, 0, 0, 0, 1, 2, 3]));
  const logger = recordingLogger();
  const reopened = new Spool(dir, { maxEvents: 100, maxBytes: 1 << 30, logger });
  assert.ok(logger.warnings.some((w) => /torn write/.test(w)));
  assert.deepEqual(reopened.durableAfter(0, 1 << 30, 100).map((e) => (e as { content: string }).content), ['message 0', 'message 1']);
  reopened.append(userMessage('s', 2));
  await reopened.close();
  const third = new Spool(dir, { maxEvents: 100, maxBytes: 1 << 30, logger: quiet });
  assert.deepEqual(third.durableAfter(0, 1 << 30, 100).map((e) => e.seq), [1, 2, 3]);
  // An event the daemon would refuse never enters the spool (it would block every later one).
  assert.throws(() => third.append({ kind: 'user.message', at: Date.now(), sessionKey: 's', content: 42 } as unknown as NewEvent));
  assert.equal(third.stats().lastSeq, 3);
  await third.close();
});

test('an event the daemon refuses is set aside once, and the events after it are delivered without a reconnect storm', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const stateDir = tempDir('clawrl-link-state-');
  const daemon = await startDaemon({ dataDir, token: 'secret' });
  const sessionKey = 'agent:main:poison';
  try {
    // An older plugin's spool holding an event this protocol refuses (a run id over the key bound).
    const frame = (event: object) => {
      const body = encode({ type: 'events', events: [event as Event] });
      const head = Buffer.alloc(4);
      head.writeUInt32LE(body.length);
      return Buffer.concat([head, body]);
    };
    writeFileSync(
      join(stateDir, 'spool.bin'),
      Buffer.concat([
        frame({ kind: 'session.optin', seq: 1, at: 1, sessionKey }),
        frame({ kind: 'user.message', seq: 2, at: 2, sessionKey, runId: 'r'.repeat(3000), content: 'poison' }),
        frame({ kind: 'user.message', seq: 3, at: 3, sessionKey, content: 'after the poison' }),
      ]),
    );
    const link = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      // And one the protocol refuses at once: never spooled, never sent.
      assert.equal(link.enqueue({ kind: 'user.message', at: 4, sessionKey: 'k'.repeat(600), content: 'bad key' }), undefined);
      link.enqueue(userMessage(sessionKey, 4));
      link.start();
      await until(() => link.status().pending === 0, 'all acked or set aside', 15_000);
      // A barrier instead of a pause: one more event, acked in order after anything resent before it.
      link.enqueue(userMessage(sessionKey, 5));
      await until(() => link.status().pending === 0, 'the last event acked', 15_000);
      const status = link.status();
      assert.equal(status.quarantined, 2);
      assert.ok(status.sent <= 5, `sent ${status.sent} events for 5 in the spool`);
      assert.deepEqual(storedContents(daemon, sessionKey), ['after the poison', 'message 4', 'message 5']);
      const lines = readFileSync(join(stateDir, 'quarantine.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reason: string; event: { content: string } });
      assert.deepEqual(lines.map((l) => l.event.content), ['bad key', 'poison']);
      assert.match(lines[0]!.reason, /sessionKey is 600 bytes long, over the limit of 512 bytes/);
      assert.match(lines[1]!.reason, /refused by the daemon: .*runId is 3000 bytes long/);
      // `/clawrl status` says so.
      assert.match(describeLink(link.status()).join('\n'), /events set aside, never to be stored: 2 \(last: refused by the daemon: .*quarantine\.jsonl\)/);
    } finally {
      await link.close();
    }
  } finally {
    await daemon.close();
  }
});

test('a daemon whose storage is full is not hammered: the link waits before reconnecting', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const stateDir = tempDir('clawrl-link-state-');
  const daemon = await startDaemon({ dataDir, token: 'secret', maxStoreBytes: 1 });
  try {
    const link = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      link.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: 'full' });
      for (let i = 0; i < 3; i++) link.enqueue(userMessage('full', i));
      link.start();
      await until(() => /storage_full/.test(link.status().lastError ?? '') && link.status().state === 'waiting', 'storage_full seen and the link waiting', 15_000);
      // newLink's backoff is 20-200 ms: the next try is 15 s away only because of the storage-full floor.
      const status = link.status();
      assert.ok(status.retryAt! - Date.now() > 14_000, `next try in ${status.retryAt! - Date.now()} ms`);
      assert.match(describeLink(status)[0]!, /^daemon: waiting, next try in 1[45] s /);
      assert.equal(status.pending, 4);
    } finally {
      await link.close();
    }
  } finally {
    await daemon.close();
  }
});

test('two processes on one state dir write separate spools with their own client ids; nothing is lost', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const stateDir = tempDir('clawrl-link-state-');
  const daemon = await startDaemon({ dataDir, token: 'secret' });
  // Another process (a gateway, say) holds the state dir's first spool.
  const holder = spawn(process.execPath, ['--import', 'tsx', '-e', `
    import('${new URL('../plugin/spool.ts', import.meta.url).pathname}').then(({ claimSpoolDir }) => {
      console.log(claimSpoolDir(process.argv[1]).dir);
    });
    setInterval(() => {}, 1000);`, stateDir], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(holder.stdout!, 'data')) as [Buffer];
    assert.equal(line.toString().trim(), stateDir);
    const first = newLink(daemon.wsUrl, 'secret', stateDir);
    const second = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      assert.notEqual(first.clientId, second.clientId);
      for (const [i, link] of [first, second].entries()) {
        link.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: `s${i}` });
        for (let n = 0; n < 50; n++) link.enqueue(userMessage(`s${i}`, n));
        link.start();
      }
      await until(() => first.status().pending === 0 && second.status().pending === 0, 'both acked', 15_000);
      for (const key of ['s0', 's1']) assert.equal(storedContents(daemon, key).length, 50);
    } finally {
      await first.close();
      await second.close();
    }
    // A process that is gone leaves its folder to the next one, with its client id.
    holder.kill('SIGKILL');
    await once(holder, 'exit');
    const next = newLink(daemon.wsUrl, 'secret', stateDir);
    try {
      assert.equal(next.status().lastSeq, 0);
      assert.notEqual(next.clientId, first.clientId);
    } finally {
      await next.close();
    }
  } finally {
    holder.kill('SIGKILL');
    await daemon.close();
  }
});

test('copies of a state folder (restored backups, cloned volumes) that made their own events under its client id each get a new id; nothing any of them made is lost', async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const original = tempDir('clawrl-link-state-');
  const daemon = await startDaemon({ dataDir, token: 'secret' });
  const sessionKey = 'agent:main:copied';
  const message = (content: string, at: number): NewEvent => ({ kind: 'user.message', at, sessionKey, content });
  const run = async (stateDir: string, events: NewEvent[], logger: { info(): void; warn(m: string): void } = quiet) => {
    const link = new Link({ url: daemon.wsUrl, token: 'secret', stateDir, logger, clientVersion: 'test', spoolMaxEvents: 1000, spoolMaxBytes: 1 << 24, minBackoffMs: 20, maxBackoffMs: 200 });
    for (const event of events) link.enqueue(event);
    link.start();
    await until(() => link.status().pending === 0 && link.status().state === 'connected', 'all acked', 15_000);
    await link.close();
    return link.clientId;
  };
  try {
    const id = await run(original, [{ kind: 'session.optin', at: 1, sessionKey }, message('before the copy', 2)]);
    const copies = [tempDir('clawrl-link-copy-'), tempDir('clawrl-link-copy-')];
    for (const copy of copies) cpSync(original, copy, { recursive: true });
    // The original goes on: seq 3-7 acked under its id.
    assert.equal(await run(original, [3, 4, 5, 6, 7].map((i) => message(`original ${i}`, 100 + i))), id);
    // One copy made fewer events than the daemon has acked since (seq 3-4: never sent there), the
    // other more (seq 3-10: the daemon's seq 7 is another event).
    const warned = recordingLogger();
    const fewer = await run(copies[0]!, [3, 4].map((i) => message(`fewer ${i}`, 200 + i)), warned);
    const more = await run(copies[1]!, [3, 4, 5, 6, 7, 8, 9, 10].map((i) => message(`more ${i}`, 300 + i)));
    assert.equal(new Set([id, fewer, more]).size, 3, 'each copy took a new client id');
    assert.match(warned.warnings.join('\n'), /holds seq 7 of client id .* did not send there: a copy of .* uses that id too/);
    assert.equal(readFileSync(join(copies[0]!, 'client-id'), 'utf8'), fewer, 'the new id is kept for the next start');
    // And the original still is itself: its next event is stored under its id.
    assert.equal(await run(original, [message('original 8', 108)]), id);
    const stored = storedContents(daemon, sessionKey);
    const expected = ['before the copy', ...[3, 4, 5, 6, 7, 8].map((i) => `original ${i}`), 'fewer 3', 'fewer 4', ...[3, 4, 5, 6, 7, 8, 9, 10].map((i) => `more ${i}`)];
    assert.deepEqual([...stored].sort(), expected.sort());
    assert.deepEqual(daemon.store.clientAck(id), { seq: 8, at: 108 });
  } finally {
    await daemon.close();
  }
});

test("a spool tells its own acks from a copy's: by seq and by the acked event's at, also after a restart", async () => {
  const dir = tempDir('clawrl-spool-');
  let spool = new Spool(dir, { maxEvents: 100, maxBytes: 1 << 20, logger: quiet });
  for (const at of [10, 20, 30, 40]) spool.append({ kind: 'user.message', at, sessionKey: 's', content: `at ${at}` });
  await spool.flush();
  // The daemon stored seq 3 but its ack was lost: ours, and so is any seq without an at (an older daemon).
  assert.equal(spool.isOwnAck(3, 30), true);
  assert.equal(spool.isOwnAck(3, undefined), true);
  assert.equal(spool.isOwnAck(0, undefined), true, 'a daemon that lost its store');
  assert.equal(spool.isOwnAck(3, 31), false, 'another event at seq 3');
  assert.equal(spool.isOwnAck(5, undefined), false, 'a seq this spool never handed out');
  spool.ack(4);
  await spool.close();
  spool = new Spool(dir, { maxEvents: 100, maxBytes: 1 << 20, logger: quiet });
  try {
    assert.equal(spool.isOwnAck(4, 40), true);
    assert.equal(spool.isOwnAck(4, 41), false, 'the acked event is remembered across a restart');
    assert.equal(spool.isOwnAck(2, 99), true, 'a daemon behind this spool (its store restored) cannot be told apart');
  } finally {
    await spool.close();
  }
});

test("the store keeps each client's acked seq with its event's at, and reads a version 6 store's bare seq", async () => {
  const dir = tempDir('clawrl-acks-');
  let store = await Store.open(dir);
  const ev = (seq: number, at: number): Event => ({ kind: 'session.optin', seq, at, sessionKey: 's' });
  await store.appendEvents('c', [ev(1, 10), ev(2, 20)]);
  assert.deepEqual(store.clientAck('c'), { seq: 2, at: 20 });
  await store.appendEvents('c', [ev(2, 99)]);
  assert.deepEqual(store.clientAck('c'), { seq: 2, at: 20 }, 'a replay changes nothing');
  await store.appendEvents('c', [ev(3, 30)], 2, { seq: 5, at: 50 });
  assert.deepEqual(store.clientAck('c'), { seq: 5, at: 50 }, 'acked through a refused event');
  await store.appendEvents('c', [], 5, { seq: 6 });
  assert.deepEqual(store.clientAck('c'), { seq: 6 }, 'a refused event without an at');
  await store.internalTables().clients.put('old', 7);
  await store.meta.put('schemaVersion', 6);
  await store.close();
  store = await Store.open(dir);
  try {
    assert.equal(store.meta.get('schemaVersion'), 7);
    assert.deepEqual(store.clientAck('old'), { seq: 7 });
    assert.equal(store.ackedSeq('old'), 7);
  } finally {
    await store.close();
  }
});

test("two OpenClaw installs on one daemon keep their own sessions under the same keys, and their own hints; an install's processes share theirs", async () => {
  const dataDir = tempDir('clawrl-link-daemon-');
  const daemon = await startDaemon({ dataDir, token: 'secret' });
  const [laptop, desktop] = [tempDir('clawrl-install-a-'), tempDir('clawrl-install-b-')];
  const key = 'agent:main:main';
  const send = async (stateDir: string, content: string) => {
    const link = newLink(daemon.wsUrl, 'secret', stateDir);
    link.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: key });
    link.enqueue({ kind: 'user.message', at: Date.now(), sessionKey: key, content });
    link.start();
    await until(() => link.status().pending === 0 && link.status().state === 'connected', 'acked', 15_000);
    return link;
  };
  try {
    // The first install to connect keeps its keys as they are (stores from before keep working).
    const first = await send(laptop, 'from the laptop');
    const second = await send(desktop, 'from the desktop');
    // A second process of the laptop's install: its own spool and client id, the same sessions.
    const again = await send(laptop, 'from the laptop again');
    assert.notEqual(again.clientId, first.clientId);
    for (const link of [first, second, again]) await link.close();
    const desktopKey = key + installSuffix(installIdOf(desktop));
    assert.deepEqual(storedContents(daemon, key), ['from the laptop', 'from the laptop again']);
    assert.deepEqual(storedContents(daemon, desktopKey), ['from the desktop']);
    assert.equal(daemon.store.installSuffix(installIdOf(laptop)), '');
    assert.notEqual(installIdOf(laptop), installIdOf(desktop));

    // A served response: the plugin's headers name the install.
    const served = (installId?: string) => readTurnHeaders({ headers: { 'x-clawrl-session-key': key, ...(installId && { 'x-clawrl-install': installId }) } } as unknown as IncomingMessage, (id) => daemon.store.installSuffix(id));
    assert.equal(served(installIdOf(desktop)).sessionKey, desktopKey);
    assert.equal(served(installIdOf(laptop)).sessionKey, key);
    assert.equal(served().sessionKey, key, 'an older plugin that names no install is the home one');

    // Hints learned in each install's session go to that install only, named as it names them.
    await daemon.hints.learn({ text: 'Laptop: run the linter first.', context: 'lint', origin: 'feedback', sessionKey: key, source: `${key}#0` });
    await daemon.hints.learn({ text: 'Desktop: use the staging database.', context: 'db', origin: 'feedback', sessionKey: desktopKey, source: `${desktopKey}#0` });
    const hintsOf = async (installId: string) => {
      const res = await fetch(`${daemon.url}/hints`, { headers: { authorization: 'Bearer secret', 'x-clawrl-install': installId } });
      return { etag: res.headers.get('etag'), hints: ((await res.json()) as HintsSnapshot).hints.map((h) => [h.text, h.scope.agent]) };
    };
    const [laptopHints, desktopHints] = [await hintsOf(installIdOf(laptop)), await hintsOf(installIdOf(desktop))];
    assert.deepEqual(laptopHints.hints, [['Laptop: run the linter first.', 'main']]);
    assert.deepEqual(desktopHints.hints, [['Desktop: use the staging database.', 'main']]);
    assert.notEqual(laptopHints.etag, desktopHints.etag, 'a cached copy of one install is never taken for the other');
  } finally {
    await daemon.close();
  }
});

test('processes that start together on a new state folder agree on its install id', async () => {
  const stateDir = tempDir('clawrl-install-race-');
  const script = `import { installIdOf } from ${JSON.stringify(new URL('../plugin/link.ts', import.meta.url).href)}; process.stdout.write(installIdOf(${JSON.stringify(stateDir)}));`;
  const ids = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      await once(child, 'exit');
      return out;
    }),
  );
  assert.match(ids[0]!, /^clawrl-install-/);
  assert.deepEqual(new Set(ids), new Set([ids[0]]));
  assert.equal(readFileSync(join(stateDir, 'install-id'), 'utf8'), ids[0]);
});

test('a spool folder locked from another container (another host or PID namespace) is left to it while its heartbeat is fresh, and taken once the heartbeat stops', async () => {
  const stateDir = tempDir('clawrl-spool-lock-');
  const lock = join(stateDir, 'spool.lock');
  const ours = () => JSON.parse(readFileSync(lock, 'utf8')) as { pid: number; host: string; pidNamespace: string };
  // This process's own pid, written in another container: there it is another process, alive.
  for (const other of [{ host: 'other-container', pidNamespace: readlinkSync('/proc/self/ns/pid') }, { host: hostname(), pidNamespace: 'pid:[1]' }]) {
    writeFileSync(lock, JSON.stringify({ pid: process.pid, ...other }));
    const beside = claimSpoolDir(stateDir);
    assert.equal(beside.dir, join(stateDir, 'spool-1'), `a lock of ${JSON.stringify(other)} is respected`);
    beside.release();
  }
  const old = new Date(Date.now() - LOCK_STALE_MS - 1_000);
  utimesSync(lock, old, old);
  const taken = claimSpoolDir(stateDir);
  assert.equal(taken.dir, stateDir, 'an untouched lock of a process out of sight is stale');
  assert.deepEqual(ours(), { pid: process.pid, host: hostname(), pidNamespace: readlinkSync('/proc/self/ns/pid') });
  taken.release();

  // In this PID namespace the pid decides at once: a restart after a crash takes its folder back.
  const gone = spawn(process.execPath, ['-e', '0']);
  await once(gone, 'exit');
  for (const content of [JSON.stringify({ pid: gone.pid, host: hostname(), pidNamespace: readlinkSync('/proc/self/ns/pid') }), String(gone.pid)]) {
    writeFileSync(lock, content);
    const back = claimSpoolDir(stateDir);
    assert.equal(back.dir, stateDir, `a dead holder's lock (${content}) is stale`);
    back.release();
  }
});

test('a lock holder touches its lock every heartbeat, so processes that cannot see its pid know it lives', (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const stateDir = tempDir('clawrl-spool-lock-');
  const lock = join(stateDir, 'spool.lock');
  const held = claimSpoolDir(stateDir);
  try {
    const old = new Date(Date.now() - 3_600_000);
    utimesSync(lock, old, old);
    t.mock.timers.tick(LOCK_HEARTBEAT_MS);
    assert.ok(Date.now() - statSync(lock).mtimeMs < 5_000, 'touched');
  } finally {
    held.release();
  }
});
