import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack } from 'msgpackr';
import { decode, encode, ProtocolError, type Event, type Message } from '../protocol/index.ts';

const base = { seq: 1, at: 1700000000000, sessionKey: 'agent:main:s1', sessionId: 'sid', runId: 'run' };
const events: Event[] = [
  { ...base, kind: 'session.optin' },
  { ...base, kind: 'session.optout' },
  { ...base, kind: 'model.call', callId: 'run:model:1', turnId: 't', provider: 'clawrl', model: 'm', trigger: 'user', side: false },
  { ...base, kind: 'model.output', assistantTexts: ['hi'], toolCalls: [{ id: 'c1', name: 'exec', arguments: '{"cmd":"ls"}' }], usage: { input: 3, output: 1 } },
  {
    ...base,
    kind: 'tool.result',
    toolCallId: 'c1',
    toolName: 'exec',
    params: { cmd: 'ls' },
    output: 'x',
    isError: false,
    exitCode: 2,
    timedOut: false,
    durationMs: 5,
    image: { count: 1, mimeTypes: ['image/png'], bytes: 100 },
  },
  { ...base, kind: 'user.message', content: 'héllo ✓' },
  { ...base, kind: 'run.end', success: true, durationMs: 10 },
  { ...base, kind: 'session.end', reason: 'reset' },
  { ...base, kind: 'feedback', rating: 'good', hint: 'use ls -la' },
];

const messages: Message[] = [
  { type: 'hello', protocol: 1, clientId: 'c', clientVersion: '0.1.0' },
  { type: 'events', events },
  { type: 'welcome', protocol: 1, serverVersion: '0.1.0', ackedSeq: 7, weightVersion: 'v000001' },
  { type: 'ack', seq: 9 },
  { type: 'weights.updated', version: 'v000002', recipe: 'binary-rl', metrics: { loss: 0.5 } },
  { type: 'error', code: 'bad_frame', message: 'nope' },
];

test('every message kind and event kind survives a round trip', () => {
  for (const message of messages) assert.deepEqual(decode(encode(message)), message);
});

function rejects(value: unknown, pattern: RegExp) {
  assert.throws(
    () => decode(value instanceof Uint8Array ? value : pack(value)),
    (err: unknown) => err instanceof ProtocolError && err.code === 'bad_frame' && pattern.test(err.message),
  );
}

test('bad frames are refused with a message naming the problem', () => {
  rejects(new Uint8Array([0xc1, 0xff, 0x00]), /not valid msgpack/);
  rejects(encode(messages[1]!).subarray(0, 40), /not valid msgpack/);
  rejects('just a string', /frame must be a map, got string/);
  rejects({ type: 'launch' }, /frame.type is unknown: "launch"/);
  rejects({ type: 'ack', seq: -1 }, /ack.seq must be a non-negative integer/);
  rejects({ type: 'ack', seq: 'x' }, /ack.seq must be a non-negative integer, got string/);
  rejects({ type: 'hello', protocol: 1, clientId: 'c' }, /hello.clientVersion is missing/);
  rejects({ type: 'events', events: 'x' }, /events.events must be an array/);
  rejects({ type: 'events', events: [{ ...base, kind: 'explode' }] }, /events\[0\].kind is unknown: "explode"/);
  rejects({ type: 'events', events: [events[0], { ...base, kind: 'user.message' }] }, /events\[1\]\(user.message\).content is missing/);
  rejects({ type: 'events', events: [{ ...base, seq: 1.5, kind: 'session.end' }] }, /events\[0\].seq must be a non-negative integer/);
  rejects({ type: 'events', events: [{ ...events[3], toolCalls: [{ id: 1 }] }] }, /toolCalls\[0\].id must be a string, got number/);
  rejects({ type: 'events', events: [{ ...events[8], rating: 'meh' }] }, /rating must be one of good, bad/);
  rejects({ type: 'events', events: [{ ...base, at: Infinity, kind: 'session.end' }] }, /at must be a finite number/);
});

test('frames over the size limit are refused before decoding', () => {
  const big = encode({ type: 'events', events: [{ ...base, kind: 'user.message', content: 'x'.repeat(2000) }] });
  assert.throws(
    () => decode(big, 1024),
    (err: unknown) => err instanceof ProtocolError && err.code === 'too_large' && /frame of \d+ bytes exceeds the limit of 1024 bytes/.test(err.message),
  );
  assert.equal(decode(big).type, 'events');
});
