// Logging never takes the daemon down: a full disk or a closed pipe under stdout and stderr is
// counted and the daemon goes on serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, createWriteStream, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import WebSocket from 'ws';
import { createLogger, outputFailures, throttled } from '../daemon/log.ts';
import { startDaemon } from '../daemon/server.ts';
import { TestClient, cliPath, optIn, runCli, tempDir, until, userMessage } from './helpers.ts';

test('a daemon whose stdout and stderr are /dev/full keeps serving and storing', async () => {
  const dir = tempDir();
  const full = openSync('/dev/full', 'w');
  const child = spawn(process.execPath, [cliPath, '--data-dir', dir, 'start', '--port', '0', '--log-level', 'debug'], { stdio: ['ignore', full, full] });
  closeSync(full);
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code));
  try {
    // Its listening line went nowhere: the runtime file says where it is.
    const { port } = await until(() => {
      if (exited !== null) throw new Error(`the daemon exited with ${exited}`);
      try {
        return JSON.parse(readFileSync(join(dir, 'daemon.json'), 'utf8')) as { port: number };
      } catch {
        return undefined;
      }
    }, 'daemon.json');
    const url = `http://127.0.0.1:${port}`;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    // Refused WebSockets log a warning that cannot be written (40 of these once killed it; now
    // once a minute), and each plugin connection logs two lines that cannot be.
    for (let i = 0; i < 10; i++) {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { authorization: 'Bearer wrong' } });
      const status = await new Promise<number>((resolve) => {
        socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
        socket.on('error', () => resolve(0));
      });
      assert.equal(status, 401);
    }
    assert.equal((await fetch(`${url}/healthz`)).status, 200);

    const token = (await runCli(dir, ['token'])).stdout.trim();
    for (let i = 0; i < 25; i++) {
      const visitor = await TestClient.connect(`ws://127.0.0.1:${port}/ws`, token);
      await visitor.hello(`visitor-${i}`);
      visitor.close();
    }
    const client = await TestClient.connect(`ws://127.0.0.1:${port}/ws`, token);
    await client.hello('full-disk');
    assert.equal(await client.sendEvents([optIn(1, 'agent:main:full'), userMessage(2, 'agent:main:full', 'stored despite the log')]), 2);
    client.close();
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    const failures = Number(/^clawrl_output_write_failures_total (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(failures >= 30, `counted ${failures} failed writes`);
    assert.equal(exited, null);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  }
  assert.equal(child.exitCode, 0);
  const shown = await runCli(dir, ['sessions', 'show', 'agent:main:full']);
  assert.match(shown.stdout, /stored despite the log/);
});

test('a log stream that fails (EPIPE), or has closed, is counted and never throws', async () => {
  const before = outputFailures().count;
  const broken = new Writable({
    write(_chunk, _enc, cb) {
      cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    },
  });
  const log = createLogger('info', broken);
  log.info('one');
  await new Promise((r) => setImmediate(r));
  assert.equal(broken.destroyed, true);
  log.warn('two, after the stream is gone');
  log.error('three');
  await new Promise((r) => setImmediate(r));
  assert.equal(outputFailures().count - before, 3);
  assert.equal(outputFailures().lastCode, 'ERR_STREAM_DESTROYED');

  // A file-like output (here /dev/full) is written line by line: each line fails on its own.
  const device = createWriteStream('/dev/full', { fd: openSync('/dev/full', 'w') });
  const onFull = createLogger('info', device);
  const mid = outputFailures().count;
  onFull.info('a');
  onFull.info('b');
  assert.equal(outputFailures().count - mid, 2);
  assert.equal(outputFailures().lastCode, 'ENOSPC');
  device.destroy();
});

test('refusals anyone can cause (a wrong token, bad frames) are logged once a minute with a count, not once each', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } as unknown as NodeJS.WritableStream;
  const daemon = await startDaemon({ dataDir: tempDir(), token: 'secret', log: createLogger('info', sink) });
  try {
    for (let i = 0; i < 100; i++) {
      const ws = new WebSocket(daemon.wsUrl, { headers: { authorization: 'Bearer wrong' } });
      await once(ws, 'error');
    }
    const client = await TestClient.connect(daemon.wsUrl, 'secret');
    await client.hello('flooder');
    for (let i = 0; i < 100; i++) client.socket.send('not msgpack');
    await until(() => client.received.filter((m) => m.type === 'error').length === 100, 'every bad frame answered');
    client.socket.close();
    const count = (msg: string) => lines.filter((l) => l.msg === msg).length;
    assert.equal(count('refused a WebSocket with a missing or wrong token'), 1);
    assert.equal(count('gateway refused a frame'), 1);
    // Each client is still told what was wrong, every time.
    assert.match(String((client.received.find((m) => m.type === 'error') as { message: string }).message), /binary msgpack/);
  } finally {
    await daemon.close();
  }

  // After the window, the next one is logged with how many were left out.
  const seen: [string, Record<string, unknown> | undefined][] = [];
  const record = (msg: string, fields?: Record<string, unknown>) => void seen.push([msg, fields]);
  const log = throttled({ debug: record, info: record, warn: record, error: record }, 50);
  for (let i = 0; i < 5; i++) log.warn('refused', { i });
  log.warn('another message', {});
  await new Promise((r) => setTimeout(r, 60));
  log.warn('refused', { i: 5 });
  assert.deepEqual(seen, [
    ['refused', { i: 0 }],
    ['another message', {}],
    ['refused', { i: 5, leftOutSinceLast: 4 }],
  ]);
});
