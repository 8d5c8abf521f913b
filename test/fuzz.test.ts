// A short fuzzing run in the default suite; bench/fuzz.ts runs the same properties for longer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon, type Daemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { UpstreamBackend } from '../daemon/backends/upstream.ts';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { TestClient, optIn, tempDir, userMessage } from './helpers.ts';
import { decoderProperty, httpProperty, seqProperty, websocketProperty } from './fuzz-properties.ts';

let daemon: Daemon;
let fake: FakeVllm;

before(async () => {
  fake = await startFakeVllm([{ text: 'ok' }]);
  daemon = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), backend: await UpstreamBackend.create({ url: fake.url }) });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  await client.hello('fuzz-setup');
  await client.sendEvents([optIn(1, 'fuzz-known'), userMessage(2, 'fuzz-known', 'must survive')]);
  client.close();
});
after(async () => {
  await daemon.close();
  await fake.close();
});

test('the frame decoder refuses hostile bytes with a ProtocolError and recovers', () => {
  assert.equal(decoderProperty(400), 400);
});

test('hostile frames over a real WebSocket: an error each, the link stays up, stored data unchanged', async () => {
  assert.equal(await websocketProperty(daemon, 150), 150);
});

test('hostile bodies to /v1/chat/completions never get a 5xx', async () => {
  assert.equal(await httpProperty(daemon, 150), 150);
});

test('replayed and out-of-order seqs are stored once, in order', async () => {
  assert.equal(await seqProperty(daemon, 30), 30);
});
