// Large /v1 requests and the daemon's event loop: an in-process daemon (tiny embedded policy, the
// session opted in so the response is recorded) gets chat requests of several shapes, and
// perf_hooks' monitorEventLoopDelay gives the longest the loop was blocked while each was read,
// refused or served and recorded (target: never over 50 ms). Bodies are built before timing.
// Usage: node --import tsx bench/big-request.ts [--repeat 3]
import { request } from 'node:http';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { tempDir, until } from '../test/helpers.ts';

const { values } = parseArgs({ options: { repeat: { type: 'string', default: '3' } } });
const repeat = Number(values.repeat);

const daemon = await startDaemon({
  dataDir: tempDir('clawrl-big-request-'),
  port: 0,
  log: createLogger('silent'),
  backend: await EmbeddedBackend.create({ model: { dim: 32, layers: 1, heads: 2, context: 128, seed: 5 } }),
});

const chat = (messages: { role: string; content: string }[]) => Buffer.from(JSON.stringify({ model: 'clawrl-embedded', messages, max_tokens: 4 }));
const MiB = 1024 * 1024;
const line = 'ls -la /var/log && tail -n 50 syslog | grep error\n';
const shapes: [string, Buffer][] = [
  ['a chat turn (10 messages, 2 KiB)', chat(Array.from({ length: 10 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: line.repeat(4) })))],
  ['a long agent history (400 messages, 1 MiB)', chat(Array.from({ length: 400 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: line.repeat(Math.floor(MiB / 400 / line.length)) })))],
  ['one 3.9 MiB tool output (under the 4 MiB limit)', chat([{ role: 'user', content: line.repeat(Math.floor((3.9 * MiB) / line.length)) }])],
  ['4,096 short messages (the message limit)', chat(Array.from({ length: 4096 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `step ${i}: ok` })))],
  ['10^6 messages (30 MB)', chat(Array.from({ length: 1_000_000 }, () => ({ role: 'user', content: 'hi' })))],
  ['one 30 MB message', chat([{ role: 'user', content: line.repeat(Math.floor(30_000_000 / line.length)) }])],
];

let session = 0;
function post(body: Buffer): Promise<{ status: number; text: string; sessionKey: string }> {
  const sessionKey = `agent:big:${++session}`;
  let answered = false;
  return new Promise((resolve, reject) => {
    const req = request(`${daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${daemon.token}`, 'content-type': 'application/json', 'x-clawrl-session-key': sessionKey, 'x-clawrl-opt-in': '1' },
    }, (res) => {
      answered = true;
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, text, sessionKey }));
    });
    // A body refused by its length is answered before it is read, and the rest of its upload is cut off.
    const failed = (err: Error) => answered || reject(err);
    req.on('error', failed);
    req.on('socket', (socket) => socket.on('error', failed));
    req.end(body);
  });
}

const rows: string[] = [];
const loop = monitorEventLoopDelay({ resolution: 5 });
loop.enable();
for (const [name, body] of shapes) {
  const maxes: number[] = [];
  let outcome = '';
  for (let i = 0; i < repeat; i++) {
    await new Promise((r) => setTimeout(r, 200));
    loop.reset();
    const start = performance.now();
    const { status, text, sessionKey } = await post(body);
    // A served response counts until its sample is stored (redaction and the write happen after the reply).
    if (status === 200) await until(() => daemon.store.samplesOf(sessionKey).next().done === false, 'the sample');
    const ms = performance.now() - start;
    maxes.push(loop.max / 1e6);
    outcome = status === 200 ? `200, recorded in ${ms.toFixed(0)} ms` : `${status}: ${(JSON.parse(text) as { error: { message: string } }).error.message}`;
  }
  rows.push(`| ${name} | ${(body.length / MiB).toFixed(2)} | ${outcome} | ${Math.max(...maxes) === 0 ? '< 5 (no sample over the resolution)' : Math.max(...maxes).toFixed(1)} |`);
  console.error(rows.at(-1));
}
loop.disable();
await daemon.close();

console.log(`load average ${loadavg()[0]!.toFixed(2)}; ${repeat} requests per shape; event-loop delay from monitorEventLoopDelay (5 ms resolution), the largest of the runs`);
console.log('| request | body MiB | answer | event loop blocked at most, ms |');
console.log('|---|---|---|---|');
for (const row of rows) console.log(row);
