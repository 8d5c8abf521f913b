import { test } from 'node:test';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { REDACTED, redactDeep, redactRecord, redactSecrets, setCustomPatterns } from '../daemon/redact.ts';
import { Store } from '../daemon/store.ts';
import { INLINE_REDACT_CHARS, redactSized } from '../daemon/redact-off-loop.ts';
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

test('a key names a secret by how it ends: plurals, longer words and ids are not secrets', () => {
  const secret = [
    'GITHUB_TOKEN=abcd1234',
    'authToken: "abcdef12"',
    'x-api-key: abcd1234',
    'apiKey=abcd1234',
    'DB_PASSWORD_2=hunter22',
    'client_secret=abcd1234',
    'Cookie: sid=abcdef',
    'Proxy-Authorization: abcd1234',
    'spring.datasource.password=hunter22',
    'aws_secret_access_key = abcd1234',
    'auth: abcd1234',
    'pass=hunter22',
    'PGPASSWORD=hunter22',
  ];
  for (const text of secret) assert.ok(redactSecrets(text).endsWith(REDACTED) || redactSecrets(text).endsWith(`${REDACTED}"`), text);
  const ordinary = [
    'max_tokens: 4096',
    '"author": "Jane Doe"',
    'passport: X1234567',
    'agent:secretary:main',
    'agent:author:telegram:dm:42',
    'tokenizer: bert-base',
    'bypass: enabled',
    'token_count=1234',
    'PWD=/home/user/project',
    'compass: north-east',
    'authority: example.org',
  ];
  for (const text of ordinary) assert.equal(redactSecrets(text), text, text);
});

test('a string under an object key that names a secret is redacted whole; a record keeps its ids', () => {
  const count = { found: 0 };
  const params = { headers: { 'x-api-key': 'q8Zr4LmT92xKpV7s', accept: 'json' }, env: { DB_PASSWORD: 'hunter2hunter2', HOME: '/root' }, max_tokens: 4096, author: 'Jane Doe', token: 'abc' };
  assert.deepEqual(redactDeep(params, count), { headers: { 'x-api-key': REDACTED, accept: 'json' }, env: { DB_PASSWORD: REDACTED, HOME: '/root' }, max_tokens: 4096, author: 'Jane Doe', token: 'abc' });
  assert.equal(count.found, 2);
  // Ids that the KEY=value rule would read as `secretary: main` are what records are filed under.
  const event = { kind: 'user.message', sessionKey: 'agent:token:main', runId: 'auth:abcd1234', content: 'auth: abcd1234' };
  assert.deepEqual(redactRecord(event), { ...event, content: `auth: ${REDACTED}` });
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

test('redactDeep copies only what it changed and never changes its input', () => {
  const clean = { kind: 'user.message', sessionKey: 'agent:main:a', content: 'no secrets here', parts: [{ text: 'none' }] };
  assert.equal(redactDeep(clean), clean, 'nothing to redact: the same object back');
  const input = { a: { keep: { x: 'plain' }, list: ['plain', 'token=abcdef123'] }, b: 'plain' };
  const before = structuredClone(input);
  const out = redactDeep(input);
  assert.deepEqual(input, before, 'the input is left as it was');
  assert.deepEqual(out, { a: { keep: { x: 'plain' }, list: ['plain', `token=${REDACTED}`] }, b: 'plain' });
  assert.notEqual(out.a, input.a);
  assert.notEqual(out.a.list, input.a.list);
  assert.equal(out.a.keep, input.a.keep, 'an unchanged branch is shared');
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

test("a session key that reads like KEY=value is stored as it is: the session's events and samples stay its own, and sessions rm takes them", async () => {
  const store = await Store.open(tempDir());
  const keys = ['agent:secretary:telegram:dm:42', 'agent:secretary:telegram:dm:99', 'agent:author:main'];
  let seq = 0;
  for (const key of keys) await store.appendEvents('c', [optIn(++seq, key), userMessage(++seq, key, 'max_tokens: 4096, author: Jane Doe')]);
  for (const [i, key] of keys.entries()) {
    const sample = await store.recordSample({ id: `s${i}`, sessionKey: key, runId: `run:auth:${i}`, side: false, createdAt: 1, model: 'm', weightVersion: 'base', requestMessages: [{ role: 'user', content: 'max_tokens: 4096' }], promptTokens: [1], responseTokens: [2], logprobs: [-1], text: 'ok', toolCalls: [], finishReason: 'stop' });
    assert.equal(sample.redacted, undefined, `${key}: nothing secret, so its tokens are kept for training`);
    assert.deepEqual([sample.sessionKey, sample.runId, sample.responseTokens], [key, `run:auth:${i}`, [2]]);
    assert.deepEqual([...store.sessionEventsOf(key)].map((e) => [e.sessionKey, e.kind === 'user.message' && e.content]), [[key, false], [key, 'max_tokens: 4096, author: Jane Doe']]);
  }
  assert.deepEqual(store.listSessions().map((s) => s.sessionKey).sort(), [...keys].sort(), "no session made up from a redacted key");
  await store.removeSession(keys[0]!);
  assert.equal(store.sample('s0'), undefined);
  assert.deepEqual([...store.sessionEventsOf(keys[0]!)], []);
  assert.ok(store.sample('s1'), 'the other session keeps its sample');
  await store.close();
});

test('a large sample is redacted off the event loop, with the user patterns, and samples keep the order they were recorded in', async () => {
  const store = await Store.open(tempDir());
  const base = { sessionKey: 'big', side: false, createdAt: 1, model: 'm', weightVersion: 'base', promptTokens: [1], responseTokens: [2], logprobs: [-1], toolCalls: [], finishReason: 'stop' as const, text: 'ok' };
  setCustomPatterns(['ACME-\\d{6}']);
  try {
    // 1 MiB of tool output (over INLINE_REDACT_CHARS) with a built-in secret and a user pattern's near its end.
    const output = `${'ls -la /var/log && tail -n 50 syslog\n'.repeat(28_000)}token ghp_abcdefghijklmnopqrstuvwxyz0123456789 order ACME-123456 done`;
    assert.ok(output.length > INLINE_REDACT_CHARS);
    // Large values go to the worker (a promise), small ones are redacted at once.
    const pending = redactSized({ content: output });
    assert.ok(pending instanceof Promise);
    assert.ok(!(redactSized({ content: 'ACME-123456' }) instanceof Promise));
    assert.deepEqual(await pending, { value: { content: output.replace('ghp_abcdefghijklmnopqrstuvwxyz0123456789', REDACTED).replace('ACME-123456', REDACTED) }, found: 2 });
    const big = store.recordSample({ ...base, id: 'big-1', requestMessages: [{ role: 'tool', content: output }] });
    // Recorded after it, small (redacted at once, stored first if nothing held it): stored after it all the same.
    const small = store.recordSample({ ...base, id: 'small-2', requestMessages: [{ role: 'user', content: 'next' }] });
    const [bigRecord, smallRecord] = await Promise.all([big, small]);
    assert.deepEqual([bigRecord.ordinal, smallRecord.ordinal], [0, 1]);
    const content = store.samples.get('big-1')!.requestMessages[0]!.content;
    assert.ok(content.endsWith(`token ${REDACTED} order ${REDACTED} done`), content.slice(-80));
    assert.equal(content.length, output.length - 'ghp_abcdefghijklmnopqrstuvwxyz0123456789ACME-123456'.length + 2 * REDACTED.length);
    assert.equal(bigRecord.redacted, true);
    assert.deepEqual(bigRecord.promptTokens, [], 'a sample with a secret keeps no token ids');
  } finally {
    setCustomPatterns([]);
    await store.close();
  }
});

// The built-in rules as regular expressions, as they stood before three of them were rewritten
// as hand scans for linear time: on short strings (where backtracking costs nothing) they are the
// reference for what is redacted. The KEY=value one with the key read as the scan reads it: the
// whole run of key characters before the operator, ending in a name of a secret.
const REFERENCE: [RegExp, (...matchAndGroups: string[]) => string][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g, () => REDACTED],
  [/\bsk-ant-[A-Za-z0-9_-]{20,}/g, () => REDACTED],
  [/\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g, () => REDACTED],
  [/\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})/g, () => REDACTED],
  [/\bxox[abposr]-[A-Za-z0-9-]{10,}/g, () => REDACTED],
  [/\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g, () => REDACTED],
  [/\bAIza[A-Za-z0-9_-]{35}/g, () => REDACTED],
  [/\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}/g, () => REDACTED],
  [/\bhf_[A-Za-z0-9]{30,}/g, () => REDACTED],
  [/\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, () => REDACTED],
  [/\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{12,}/gi, (_m, scheme) => `${scheme} ${REDACTED}`],
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi, (_m, head) => `${head}${REDACTED}@`],
  [
    /(?<![A-Za-z0-9_.-])([A-Za-z0-9_.-]*?(?:token|secret|passw(?:or)?d|passphrase|(?:api|access|private|secret|signing)[_.-]?key|credentials?|(?<![A-Za-z0-9])(?:pass|auth|authorization|cookie))(?:[_.-]*\d)*["']?\s*[:=]\s*["']?)(?!\[REDACTED\]|(?:Bearer|Basic|Token)\s)([^\s"',;]{4,})/gi,
    (_m, head) => `${head}${REDACTED}`,
  ],
];

function referenceRedact(text: string): { text: string; found: number } {
  let found = 0;
  for (const [pattern, replace] of REFERENCE) {
    text = text.replace(pattern, (...args: string[]) => {
      found++;
      return replace(...args);
    });
  }
  return { text, found };
}

test('the linear rules redact exactly what the regular expressions they replaced did', () => {
  // Pieces that make near and full matches of every rule when strung together.
  const pieces = [
    ...'aeyJsk-_.=:/@ "\',;\n[]ABKIZp0+\u00a0'.split(''),
    ...['eyJ', 'abcdefgh', 'password', 'token', 'auth', 'api_key', '://', 'http', 'Bearer', 'Token ', 'REDACTED', 'sk-', 'sk-ant-', 'ghp_'],
    // Near names of secrets: longer words, plurals, numbering.
    ...['pass', 'or', 'tokens', 'cookie', 'secretary', 'credentials', '_2', '9'],
    ...['abcdefghijklmnopqrstuvwxyz0123456789', '-----BEGIN RSA PRIVATE KEY-----', '-----END RSA PRIVATE KEY-----', 'AKIA', 'QWERTYUIOPASDFGH'],
    // Every key format's start, for the prefilter that decides whether their rules run at all.
    ...['gho_', 'github_pat_', 'xoxb-', 'ASIA', 'AIza', 'sk_live_', 'rk_test_', 'hf_', 'Basic ', 'sk-proj-', 'sk_live', 'xox', 'AIz'],
  ];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 50 }), (parts) => {
      const text = parts.join('');
      const count = { found: 0 };
      const out = redactSecrets(text, count);
      assert.deepEqual({ text: out, found: count.found }, referenceRedact(text), JSON.stringify(text));
    }),
    { numRuns: 20_000 },
  );
});

/** A megabyte of seeded pseudo-random bytes (xorshift32), so the inputs below are the same on every run. */
function seededBytes(seed: number, size = 768 * 1024): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const MB = 1024 * 1024;
/** `unit` repeated to about `size` characters, whole units only. */
const fill = (unit: string, size = MB) => unit.repeat(Math.floor(size / unit.length));

test('megabyte runs of key, base64 and separator characters come back whole, and a secret after them is still found', () => {
  const KEY_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-';
  const unchanged: Record<string, string> = {
    base64: seededBytes(1).toString('base64'),
    base64url: seededBytes(2).toString('base64url'),
    'a=': fill('a='),
    'aaaa…=': fill('a', MB - 1) + '=',
    'a: ': fill('a: '),
    '----': fill('-'),
    '....': fill('.'),
    'a.a.': fill('a.'),
    'a-a-': fill('a-'),
    '[A-Za-z0-9_.-] mixed': [...seededBytes(3, MB)].map((b) => KEY_CHARS[b % KEY_CHARS.length]).join(''),
    'sk- too short': fill(`sk-${'a'.repeat(19)} `),
    'sk-ant- too short': fill(`sk-ant-${'a'.repeat(12)} `),
    'ghp_ too short': fill(`ghp_${'a'.repeat(29)} `),
    'eyJ-': fill('eyJ-'),
    'jwt without a third segment': fill(`eyJ${'a'.repeat(8)}.eyJ${'a'.repeat(8)}.x `),
    'password=short': fill('password=abc '),
    'token = then nothing': fill('token =  ,'),
    'scheme://user: without @': fill(`http://u:${'p'.repeat(50)}`),
    'x://': fill('x://'),
    'Bearer short': fill('Bearer abc '),
    'BEGIN without PRIVATE KEY': `-----BEGIN ${fill('A ', MB - 20)}`,
  };
  for (const [name, text] of Object.entries(unchanged)) {
    const count = { found: 0 };
    assert.ok(redactSecrets(text, count) === text && count.found === 0, name);
    const tail = ' password=hunter22';
    assert.equal(redactSecrets(text + tail), text + ` password=${REDACTED}`, `${name}, then a secret`);
  }
  // A secret whose key or value is the long run itself.
  const blob = seededBytes(4).toString('base64url');
  assert.equal(redactSecrets(`API_TOKEN=${blob}`), `API_TOKEN=${REDACTED}`);
  assert.equal(redactSecrets(`${fill('a', MB)}_password=hunter22`), `${fill('a', MB)}_password=${REDACTED}`);
  assert.equal(redactSecrets(`${fill('.', MB)}sk-${'b'.repeat(40)}`), `${fill('.', MB)}${REDACTED}`);
  // One run of sk-sk-sk-… is one key.
  assert.equal(redactSecrets(fill('sk-')), REDACTED);
  // Full JWTs back to back, each found.
  const token = `eyJ${'a'.repeat(8)}.eyJ${'b'.repeat(8)}.${'c'.repeat(8)}`;
  const count = { found: 0 };
  assert.equal(redactSecrets(Array(30_000).fill(token).join(' '), count), Array(30_000).fill(REDACTED).join(' '));
  assert.equal(count.found, 30_000);
});

test('a megabyte of JSON with many keys: every secret-named value is redacted, nothing else', () => {
  const object: Record<string, string> = {};
  for (let i = 0, size = 0; size < MB; i++, size += 64) {
    object[`field${i}`] = `value-${i}`;
    object[`db_password_${i}`] = `hunter${i}x`;
    object[`note${i}`] = 'a:b=c';
  }
  const out = JSON.parse(redactSecrets(JSON.stringify(object))) as Record<string, string>;
  for (const [key, value] of Object.entries(out)) assert.equal(value, key.startsWith('db_password_') ? REDACTED : object[key], key);
});
