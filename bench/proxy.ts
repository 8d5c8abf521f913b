// Added latency of the daemon's upstream (proxy) path: the same chat request sent straight to
// an upstream server and through the daemon, sequentially, over keep-alive connections.
// The upstream is the test suite's fake vLLM (a real HTTP server answering instantly), so the
// difference is the daemon's own cost: parsing, forwarding, recording.
// Usage: node --import tsx bench/proxy.ts [--requests 2000] [--stream]
import { parseArgs } from 'node:util';
import { Agent, request } from 'node:http';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import { startFakeVllm } from '../test/fake-vllm.ts';
import { tempDir } from '../test/helpers.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '2000' }, stream: { type: 'boolean', default: false } } });
const n = Number(values.requests);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function post(url: string, token: string, body: string, headers: Record<string, string> = {}): Promise<number> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - start) : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

async function measure(url: string, token: string, body: string, headers?: Record<string, string>): Promise<number[]> {
  for (let i = 0; i < 200; i++) await post(url, token, body, headers); // warm up the JIT and sockets
  const times: number[] = [];
  for (let i = 0; i < n; i++) times.push(await post(url, token, body, headers));
  return times.sort((a, b) => a - b);
}

const fake = await startFakeVllm([{ text: 'A short reply of about ten tokens.' }]);
const daemon = await startDaemon({ dataDir: tempDir('clawrl-bench-'), port: 0, log: createLogger('warn'), backend: await UpstreamBackend.create({ url: fake.url }) });
const body = JSON.stringify({ model: 'fake-model', stream: values.stream, messages: [{ role: 'system', content: 'x'.repeat(4000) }, { role: 'user', content: 'hi' }] });

const direct = await measure(`${fake.url}/chat/completions`, 'none', body);
const proxied = await measure(`${daemon.url}/v1/chat/completions`, daemon.token, body);
const recorded = await measure(`${daemon.url}/v1/chat/completions`, daemon.token, body, { 'x-clawrl-session-key': 'bench', 'x-clawrl-opt-in': '1' });
await daemon.close();
await fake.close();

console.log(`| path (${values.stream ? 'stream' : 'non-stream'}, ${n} requests) | p50 ms | p99 ms | added p50 ms |`);
console.log('|---|---|---|---|');
for (const [name, t] of [['upstream directly', direct], ['through the daemon', proxied], ['through the daemon, sample recorded', recorded]] as const) {
  console.log(`| ${name} | ${pct(t, 50).toFixed(2)} | ${pct(t, 99).toFixed(2)} | ${(pct(t, 50) - pct(direct, 50)).toFixed(2)} |`);
}
