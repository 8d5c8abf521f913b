// Malformed requests to the daemon's routes get a 4xx naming what is wrong, never a 5xx, and
// leave nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { MAX_VALUE_DEPTH } from '../protocol/index.ts';
import { tempDir } from './helpers.ts';
import { connect } from 'node:net';

let daemon: Daemon;
before(async () => {
  daemon = await startDaemon({
    dataDir: tempDir(),
    port: 0,
    log: createLogger('silent'),
    backend: await EmbeddedBackend.create({ model: { dim: 32, layers: 1, heads: 2, context: 128, seed: 5 } }),
  });
});
after(() => daemon.close());

const nestedObject = (levels: number) => '{"a":'.repeat(levels - 1) + '{}' + '}'.repeat(levels - 1);
const nestedArray = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
const chat = (fields: string) => `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}],${fields}}`;

async function call(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; message: string }> {
  const res = await fetch(`${daemon.url}${path}`, { method, headers: { authorization: `Bearer ${daemon.token}`, ...headers }, body });
  const text = await res.text();
  return { status: res.status, message: res.status >= 400 ? ((JSON.parse(text) as { error: { message: string } }).error.message ?? text) : text };
}

test('deep nesting in a chat request is refused with 400 naming the field and the limit', async () => {
  const cases: [string, string][] = [
    [chat(`"tools":[{"type":"function","function":{"name":"f","parameters":${nestedObject(50_000)}}}]`), 'tools[0].function.parameters'],
    [`{"model":"m","messages":[{"role":"user","content":${nestedArray(50_000)}}]}`, 'messages[0].content'],
    [`{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":[{"id":"c","function":{"name":"f","arguments":${nestedArray(50_000)}}}]}]}`, 'messages[0].tool_calls[0].function.arguments'],
    [chat(`"vendor_extension":${nestedObject(50_000)}`), 'vendor_extension'],
  ];
  for (const [body, field] of cases) {
    const { status, message } = await call('POST', '/v1/chat/completions', body);
    assert.equal(status, 400, field);
    assert.equal(message, `${field} nests deeper than ${MAX_VALUE_DEPTH} levels`);
  }
  // The limit itself is served: no tool schema comes near it.
  const atLimit = chat(`"tools":[{"type":"function","function":{"name":"f","parameters":${nestedObject(MAX_VALUE_DEPTH + 1)}}}]`);
  assert.equal((await call('POST', '/v1/chat/completions', atLimit)).status, 200);
  const overLimit = chat(`"tools":[{"type":"function","function":{"name":"f","parameters":${nestedObject(MAX_VALUE_DEPTH + 2)}}}]`);
  assert.equal((await call('POST', '/v1/chat/completions', overLimit)).status, 400);
});

test('wrong types in a chat request are 400s naming the field', async () => {
  const cases: [string, RegExp][] = [
    [chat('"stream":"yes"'), /^stream must be true or false$/],
    [chat('"logprobs":1'), /^logprobs must be true or false$/],
    [chat('"stream":true,"stream_options":"usage"'), /^stream_options must be an object$/],
    [chat('"stream":true,"stream_options":{"include_usage":"yes"}'), /^stream_options.include_usage must be true or false$/],
    [chat('"max_tokens":-5'), /^max_tokens must be an integer from 1 to/],
    [chat('"max_tokens":1e400'), /^max_tokens must be an integer from 1 to/],
    [chat('"temperature":"NaN"'), /^temperature must be a number from 0 to 2$/],
    [chat('"top_p":[1]'), /^top_p must be a number from 0 to 1$/],
    [chat('"seed":1e300'), /^seed must be an integer/],
    [`{"model":"m","messages":{"role":"user","content":"hi"}}`, /^messages must be a non-empty array$/],
    [`{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":{"id":"c"}}]}`, /^messages\[0\].tool_calls must be an array$/],
    [`{"model":"m","messages":[{"role":"assistant","content":"x","tool_calls":[{"id":{"x":1},"function":{"name":"f"}}]}]}`, /^messages\[0\].tool_calls\[0\].id must be a string$/],
    [`{"model":5,"messages":[{"role":"user","content":"hi"}]}`, /^model must be a string$/],
  ];
  for (const [body, message] of cases) {
    const res = await call('POST', '/v1/chat/completions', body);
    assert.deepEqual([res.status, message.test(res.message)], [400, true], `${body.slice(0, 120)} → ${res.message}`);
  }
});

test('an x-clawrl id header over the id limit is refused before anything is served or stored', async () => {
  const headers = { 'x-clawrl-session-key': 'agent:main:long', 'x-clawrl-opt-in': '1', 'x-clawrl-run-id': 'r'.repeat(3000) };
  const { status, message } = await call('POST', '/v1/chat/completions', chat('"stream":false'), headers);
  assert.equal(status, 400);
  assert.equal(message, 'header x-clawrl-run-id is 3000 bytes long, over the limit of 512 bytes');
  await daemon.samplesRecorded();
  assert.equal(daemon.store.samples.getCount(), 0);
});

test('weights: a version must be "base", a version name, or (to unpin) null', async () => {
  const cases: [string, string, string][] = [
    ['/weights/pin', '{"version":5}', 'version must be "base" or a version name such as "v000003", or null to unpin, got 5'],
    ['/weights/pin', '{}', 'version is missing: give "base" or a version name such as "v000003", or null to unpin'],
    ['/weights/pin', '{"version":{"v":1}}', 'version must be "base" or a version name such as "v000003", or null to unpin, got an object'],
    ['/weights/pin', '[1]', 'the request body must be a JSON object'],
    ['/weights/pin', '{"version":', 'the request body is not valid JSON'],
    ['/weights/rollback', '{"version":null}', 'version must be "base" or a version name such as "v000003", got null'],
    ['/weights/rollback', '{"version":"../../etc"}', 'version must be "base" or a version name such as "v000003", got "../../etc"'],
    ['/weights/rollback', '{}', 'version is missing: give "base" or a version name such as "v000003"'],
  ];
  for (const [path, body, message] of cases) {
    const res = await call('POST', path, body);
    assert.equal(res.status, 400, `${path} ${body}`);
    assert.ok(res.message.startsWith(message), `${path} ${body} → ${res.message}`);
  }
  // null unpins, as before.
  const unpin = await call('POST', '/weights/pin', '{"version":null}');
  assert.deepEqual([unpin.status, JSON.parse(unpin.message)], [200, { serving: 'base' }]);
});

test('the other routes: wrong methods and bad query strings are 4xx', async () => {
  const cases: [string, string, number, RegExp][] = [
    ['POST', '/metrics', 405, /^use GET for \/metrics$/],
    ['DELETE', '/weights', 405, /^use GET for \/weights$/],
    ['GET', '/train', 405, /^use POST for \/train$/],
    ['GET', '/v1/chat/completions', 405, /^use POST/],
    ['GET', `/ui/api/turns?session=${'s'.repeat(3000)}`, 400, /^session is over the limit of 512 bytes$/],
    ['GET', '/ui/api/turns?limit=abc', 400, /^limit must be an integer from 1 to 1000$/],
    ['GET', '/ui/api/turns?limit=1e400', 400, /^limit must be an integer from 1 to 1000$/],
    ['GET', '/ui/api/turns?reward=2', 400, /^reward must be 1, 0, -1 or none$/],
    ['POST', '/ui/api/overview', 405, /^use GET/],
  ];
  for (const [method, path, status, message] of cases) {
    const res = await call(method, path);
    assert.deepEqual([res.status, message.test(res.message)], [status, true], `${method} ${path.slice(0, 60)} → ${res.status} ${res.message}`);
  }
});

/** One raw HTTP/1.1 request (fetch cannot send a malformed target); the status line's code. */
async function rawStatus(target: string, headers: string): Promise<number> {
  const { port } = new URL(daemon.url);
  const socket = connect(Number(port), '127.0.0.1');
  socket.end(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}Connection: close\r\n\r\n`);
  let reply = '';
  for await (const chunk of socket) reply += String(chunk);
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);
}

test('request targets that WHATWG URLs refuse are 400s, for a request and for a WebSocket upgrade, and the daemon lives on', async () => {
  const upgrade = `Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.alloc(16).toString('base64')}\r\nAuthorization: Bearer ${daemon.token}\r\n`;
  for (const target of ['//x:99999', '//[', '//a b/ws']) {
    assert.equal(await rawStatus(target, ''), 400, `GET ${target}`);
    // Before the token check: whoever can reach the port could send it.
    assert.equal(await rawStatus(target, upgrade.replace(/Authorization: .*\r\n/, '')), 400, `upgrade ${target}`);
    assert.equal(await rawStatus(target, upgrade), 400, `upgrade ${target} with the token`);
  }
  assert.equal((await fetch(`${daemon.url}/healthz`)).status, 200);
});
