import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REDACTED, redactDeep, redactSecrets, setCustomPatterns } from '../daemon/redact.ts';
import { Store } from '../daemon/store.ts';
import { optIn, tempDir, userMessage } from './helpers.ts';

test('common secrets are redacted and ordinary text is left alone', () => {
  const cases: [string, string][] = [
    ['my key is sk-proj-abcdefghijklmnopqrstuvwxyz123456 ok', `my key is ${REDACTED} ok`],
    ['export ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuv', `export ANTHROPIC_API_KEY=${REDACTED}`],
    ['curl -H "Authorization: Bearer abcdefghijklmnop123" x', `curl -H "Authorization: Bearer ${REDACTED}" x`],
    ['postgres://admin:hunter2@db.example.com/app', `postgres://admin:${REDACTED}@db.example.com/app`],
    ['DB_PASSWORD=hunter2 and API_TOKEN: "abcd1234efgh"', `DB_PASSWORD=${REDACTED} and API_TOKEN: "${REDACTED}"`],
    ['-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\nafter', `${REDACTED}\nafter`],
    ['id AKIAIOSFODNN7EXAMPLE here', `id ${REDACTED} here`],
    ['ghp_abcdefghijklmnopqrstuvwxyz0123456789', REDACTED],
    ['xoxb-123456789012-abcdefghij', REDACTED],
    ['hf_abcdefghijklmnopqrstuvwxyzABCDEF', REDACTED],
    ['the password is in the vault', 'the password is in the vault'],
    ['tokens: 5', 'tokens: 5'],
    ['see https://example.com/a:b and ls -la', 'see https://example.com/a:b and ls -la'],
  ];
  for (const [input, expected] of cases) assert.equal(redactSecrets(input), expected, input);
});

test('user patterns apply too, and a bad pattern is named', () => {
  setCustomPatterns(['ACME-\\d{6}']);
  try {
    assert.equal(redactSecrets('ticket ACME-123456 open'), `ticket ${REDACTED} open`);
    assert.throws(() => setCustomPatterns(['(unclosed']), /--redact-pattern "\(unclosed" is not a valid regular expression/);
  } finally {
    setCustomPatterns([]);
  }
  assert.equal(redactSecrets('ticket ACME-123456 open'), 'ticket ACME-123456 open');
});

test('redactDeep walks objects and arrays and counts what it replaced', () => {
  const count = { found: 0 };
  const out = redactDeep({ a: ['x sk-abcdefghijklmnopqrstuvwxyz1234'], b: { c: 'PASSWORD=swordfish1' }, n: 3 }, count);
  assert.deepEqual(out, { a: [`x ${REDACTED}`], b: { c: `PASSWORD=${REDACTED}` }, n: 3 });
  assert.equal(count.found, 2);
});

test('secrets never reach the store: events are redacted, and a sample with one loses its token ids', async () => {
  const store = await Store.open(tempDir());
  await store.appendEvents('c', [
    optIn(1, 's'),
    userMessage(2, 's', 'use OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz1234 please'),
    {
      kind: 'tool.result',
      seq: 3,
      at: 1,
      sessionKey: 's',
      toolCallId: 'c1',
      toolName: 'exec',
      params: { command: 'curl -H "Authorization: Bearer abcdefghijklmnopqrstuvwxyz"' },
      output: 'ok',
      isError: false,
    },
  ]);
  const stored = JSON.stringify([...store.sessionEventsOf('s')]);
  assert.ok(!stored.includes('sk-abcdefghijklmnopqrstuvwxyz1234'));
  assert.ok(!stored.includes('abcdefghijklmnopqrstuvwxyz"'));
  assert.equal(stored.split(REDACTED).length - 1, 2);

  const base = {
    sessionKey: 's',
    side: false,
    createdAt: 1,
    model: 'm',
    weightVersion: 'base',
    promptTokens: [1, 2],
    responseTokens: [3],
    logprobs: [-1],
    toolCalls: [],
    finishReason: 'stop' as const,
  };
  const leaky = await store.recordSample({ ...base, id: 'a', requestMessages: [{ role: 'user', content: 'my token is ghp_abcdefghijklmnopqrstuvwxyz0123456789' }], text: 'noted' });
  assert.equal(leaky.redacted, true);
  assert.deepEqual([leaky.promptTokens, leaky.responseTokens, leaky.logprobs], [[], [], []]);
  assert.equal(store.samples.get('a')!.requestMessages[0]!.content, `my token is ${REDACTED}`);
  const clean = await store.recordSample({ ...base, id: 'b', requestMessages: [{ role: 'user', content: 'hello' }], text: 'hi' });
  assert.equal(clean.redacted, undefined);
  assert.deepEqual(store.samples.get('b')!.promptTokens, [1, 2]);
  await store.close();
});
