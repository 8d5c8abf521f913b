// Property-based fuzzing of every entry point, shared by the short run in the test suite
// (test/fuzz.test.ts) and the long run (bench/fuzz.ts). Each property drives the real decoder,
// a real daemon's WebSocket, or its HTTP API, and checks: no crash, a clear error for anything
// refused, and stored data unchanged.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import WebSocket from 'ws';
import { EVENT_KINDS, PROTOCOL_VERSION, ProtocolError, decode, encode, type Event } from '../protocol/index.ts';
import type { Daemon } from '../daemon/server.ts';
import { TestClient } from './helpers.ts';

const eventKinds = [...EVENT_KINDS, 'bogus'];

/** Maps that look like frames: right or wrong types, known or unknown kinds, junk fields. */
const frameLike = fc.oneof(
  fc.record({ type: fc.constantFrom('hello', 'events', 'ack', 'welcome', 'error', 'nope'), protocol: fc.anything(), clientId: fc.anything(), clientVersion: fc.anything(), seq: fc.anything() }, { requiredKeys: ['type'] }),
  fc.record({
    type: fc.constant('events'),
    events: fc.array(
      fc.record(
        { kind: fc.constantFrom(...eventKinds), seq: fc.oneof(fc.nat(), fc.integer(), fc.double()), at: fc.oneof(fc.nat(), fc.string()), sessionKey: fc.oneof(fc.string(), fc.nat()), content: fc.anything(), output: fc.anything(), isError: fc.anything(), toolCallId: fc.anything(), toolName: fc.anything(), params: fc.anything() },
        { requiredKeys: ['kind'] },
      ),
      { maxLength: 8 },
    ),
  }),
  fc.anything(),
);

/** Bytes a hostile or broken peer might send. */
export const hostileFrame = fc.oneof(
  fc.uint8Array({ maxLength: 512 }),
  frameLike.map((v) => new Uint8Array(pack(v))),
  // Truncated valid-looking frames.
  fc.tuple(frameLike, fc.nat()).map(([v, cut]) => {
    const bytes = pack(v);
    return new Uint8Array(bytes.subarray(0, cut % (bytes.length + 1)));
  }),
  // Deep nesting and lying length headers (array32, map32, str32, bin32 claiming 4 GiB).
  fc.integer({ min: 1_000, max: 200_000 }).map((depth) => new Uint8Array(depth).fill(0x91)),
  fc.constantFrom(0xdd, 0xdf, 0xdb, 0xc6).map((tag) => new Uint8Array([tag, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])),
);

/** The decoder returns a validated message or throws ProtocolError; nothing else, and it recovers. */
export function decoderProperty(numRuns: number): number {
  let tried = 0;
  fc.assert(
    fc.property(hostileFrame, (bytes) => {
      tried++;
      try {
        const message = decode(bytes);
        assert.equal(typeof message.type, 'string');
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        assert.ok(err.message.length > 0);
      }
      // A good frame still decodes after any bad one (no state left behind).
      assert.deepEqual(decode(encode({ type: 'ack', seq: 1 })), { type: 'ack', seq: 1 });
    }),
    { numRuns },
  );
  return tried;
}

/**
 * Over a real connection: every hostile frame gets an error frame (or, if it happens to be a
 * valid batch, an ack), the connection stays up, and a known session's stored events are unchanged.
 */
export async function websocketProperty(daemon: Daemon, numRuns: number): Promise<number> {
  let client = await TestClient.connect(daemon.wsUrl, daemon.token);
  await client.hello('fuzz-ws');
  const before = JSON.stringify([...daemon.store.sessionEventsOf('fuzz-known')]);
  let tried = 0;
  await fc.assert(
    fc.asyncProperty(hostileFrame, async (bytes) => {
      tried++;
      client.sendRaw(bytes);
      const reply = await client.next(undefined, 10_000);
      assert.ok(reply.type === 'error' || reply.type === 'ack' || reply.type === 'welcome', `unexpected ${reply.type}`);
      if (reply.type === 'error') assert.ok(reply.message.length > 0);
      // A frame that fails to decode may have held events, so the daemon closes the link after its
      // error (no later ack may claim them durable); a readable frame of the wrong type leaves it open.
      if (reply.type === 'error' && !/may not send/.test(reply.message)) {
        if (client.socket.readyState !== WebSocket.CLOSED) await once(client.socket, 'close');
        client = await TestClient.connect(daemon.wsUrl, daemon.token);
        await client.hello('fuzz-ws');
      } else {
        assert.equal(client.socket.readyState, WebSocket.OPEN);
      }
    }),
    { numRuns },
  );
  assert.equal(JSON.stringify([...daemon.store.sessionEventsOf('fuzz-known')]), before);
  client.close();
  return tried;
}

/** Random JSON bodies to /v1/chat/completions: a 2xx or a 4xx in OpenAI's error shape, never a 5xx. */
export async function httpProperty(daemon: Daemon, numRuns: number): Promise<number> {
  const message = fc.record({ role: fc.oneof(fc.constantFrom('system', 'user', 'assistant', 'tool', 'developer'), fc.string()), content: fc.oneof(fc.string(), fc.constant(null), fc.array(fc.anything(), { maxLength: 3 }), fc.anything()) }, { requiredKeys: [] });
  const body = fc.oneof(
    fc.string().map((s) => s),
    fc.anything().map((v) => JSON.stringify(v) ?? 'null'),
    fc
      .record(
        {
          model: fc.oneof(fc.constant('fake-model'), fc.anything()),
          messages: fc.oneof(fc.array(message, { maxLength: 4 }), fc.anything()),
          temperature: fc.anything(),
          top_p: fc.anything(),
          max_tokens: fc.oneof(fc.integer({ min: -5, max: 50 }), fc.anything()),
          stop: fc.anything(),
          stream: fc.boolean(),
          logprobs: fc.anything(),
          top_logprobs: fc.anything(),
          tools: fc.anything(),
          n: fc.anything(),
        },
        { requiredKeys: [] },
      )
      .map((v) => JSON.stringify(v)),
  );
  let tried = 0;
  await fc.assert(
    fc.asyncProperty(body, async (text) => {
      tried++;
      const res = await fetch(`${daemon.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${daemon.token}` }, body: text });
      const reply = await res.text();
      assert.ok(res.status < 500, `status ${res.status} for ${text.slice(0, 200)}: ${reply.slice(0, 200)}`);
      if (res.status >= 400) assert.match((JSON.parse(reply) as { error: { message: string } }).error.message, /\S/);
    }),
    { numRuns },
  );
  return tried;
}

/**
 * Replayed and out-of-order seqs: whatever order a client sends them in, an event is stored iff
 * its seq is above every seq sent before it, exactly once.
 */
export async function seqProperty(daemon: Daemon, numRuns: number): Promise<number> {
  let run = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }), async (batches) => {
      const id = `fuzz-seq-${run++}`;
      const client = await TestClient.connect(daemon.wsUrl, daemon.token);
      client.send({ type: 'hello', protocol: PROTOCOL_VERSION, clientId: id, clientVersion: 'fuzz' });
      await client.next((m) => m.type === 'welcome');
      // Seq 0 never counts (acked starts at 0): opt the session in at a seq below every other.
      const sessionKey = `s-${id}`;
      const expected: number[] = [];
      let high = 0;
      for (const [b, seqs] of batches.entries()) {
        const events: Event[] = seqs.map((seq) => ({ kind: 'user.message', seq: seq + 1, at: b, sessionKey, content: String(seq + 1) }));
        if (b === 0) events.unshift({ kind: 'session.optin', seq: 1, at: 0, sessionKey });
        for (const e of events) {
          if (e.seq > high) {
            high = e.seq;
            if (e.kind === 'user.message') expected.push(e.seq);
          }
        }
        client.send({ type: 'events', events });
        const ack = await client.next((m) => m.type === 'ack' || m.type === 'error');
        assert.deepEqual(ack, { type: 'ack', seq: high });
      }
      client.close();
      const stored = [...daemon.store.sessionEventsOf(sessionKey)].filter((e) => e.kind === 'user.message').map((e) => e.seq);
      assert.deepEqual(stored, expected);
    }),
    { numRuns },
  );
  return run;
}
