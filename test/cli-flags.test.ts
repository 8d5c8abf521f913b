// Every numeric flag of `clawrl-daemon start` refuses what is not a number in its range, and
// every closed set of values is checked, with commander's own error, by the real CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { runCli, spawnDaemon, tempDir } from './helpers.ts';

test('bad numbers and values outside a closed set are refused before the daemon starts', async () => {
  const cases: [string[], string][] = [
    [['--max-connections', 'abc'], "option '--max-connections <n>' argument 'abc' is invalid. Expected an integer of at least 1."],
    [['--max-connections', '0'], "option '--max-connections <n>' argument '0' is invalid. Expected an integer of at least 1."],
    [['--port', '70000'], "option '--port <port>' argument '70000' is invalid. Expected an integer from 0 to 65535."],
    [['--port', ''], "option '--port <port>' argument '' is invalid. Expected an integer from 0 to 65535."],
    [['--batch-size', '1.5'], "option '--batch-size <n>' argument '1.5' is invalid. Expected an integer of at least 1."],
    [['--max-hints', '-3'], "option '--max-hints <n>' argument '-3' is invalid. Expected an integer of at least 1."],
    [['--max-sessions', '1e400'], "option '--max-sessions <n>' argument '1e400' is invalid. Expected an integer of at least 1."],
    [['--gpus', 'two'], "option '--gpus <n>' argument 'two' is invalid. Expected an integer of at least 1."],
    [['--micro-batch-tokens', '0x'], "option '--micro-batch-tokens <n>' argument '0x' is invalid. Expected an integer of at least 1."],
    [['--seed', '-1'], "option '--seed <n>' argument '-1' is invalid. Expected an integer of at least 0."],
    [['--lr', '0'], "option '--lr <rate>' argument '0' is invalid. Expected a number above 0."],
    [['--max-store-mb', 'NaN'], "option '--max-store-mb <n>' argument 'NaN' is invalid. Expected a number above 0."],
    [['--max-request-mb', '0'], "option '--max-request-mb <n>' argument '0' is invalid. Expected a number above 0."],
    [['--retention-days', '-1'], "option '--retention-days <n>' argument '-1' is invalid. Expected a number above 0."],
    [['--max-wait', 'soon'], "option '--max-wait <seconds>' argument 'soon' is invalid. Expected a number of at least 0."],
    [['--log-level', 'loud'], "option '--log-level <level>' argument 'loud' is invalid. Allowed choices are debug, info, warn, error, silent."],
    [['--mode', 'learn'], "option '--mode <mode>' argument 'learn' is invalid. Allowed choices are train, hints."],
    [['--hint-scope', 'global'], "option '--hint-scope <scope>' argument 'global' is invalid. Allowed choices are agent, session."],
    [['--backend', 'gpu'], "option '--backend <name>' argument 'gpu' is invalid. Allowed choices are embedded, torch, upstream."],
    [['--grad-ckpt', 'yes'], "option '--grad-ckpt <mode>' argument 'yes' is invalid. Allowed choices are auto, on, off."],
    [['--decode', 'fast'], "option '--decode <mode>' argument 'fast' is invalid. Allowed choices are auto, static, growing."],
    [['--recipe', 'ppo'], "option '--recipe <name>' argument 'ppo' is invalid. Allowed choices are binary-rl, opd, combined."],
  ];
  const dir = tempDir();
  const results = await Promise.all(cases.map(([args]) => runCli(dir, ['start', '--port', '0', ...args])));
  for (const [i, [args, message]] of cases.entries()) {
    const { code, stderr } = results[i]!;
    assert.equal(code, 1, args.join(' '));
    assert.equal(stderr.split('\n')[0], `error: ${message}`, args.join(' '));
  }
  // Refused before anything was made: no token, no store.
  assert.equal(existsSync(join(dir, 'token')), false);
  assert.equal(existsSync(join(dir, 'store')), false);
});

test('numbers in range are taken: a connection limit of 1 refuses the second plugin; a 1 KiB request limit refuses 2 KiB', async () => {
  const dir = tempDir();
  const d = await spawnDaemon(dir, ['--max-connections', '1', '--port', '0', '--max-wait', '0.5', '--lr', '1e-4', '--max-request-mb', String(1 / 1024)]);
  try {
    const token = (await runCli(dir, ['token'])).stdout.trim();
    const big = await fetch(`${d.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(2048) }] }),
    });
    assert.equal(big.status, 413);
    assert.match(await big.text(), /exceeds the limit of 1024 bytes/);
    const open = (headers: Record<string, string>) =>
      new Promise<number | WebSocket>((resolve) => {
        const socket = new WebSocket(d.wsUrl, { headers });
        socket.on('open', () => resolve(socket));
        socket.on('unexpected-response', (_req, res) => resolve(res.statusCode!));
      });
    const first = await open({ authorization: `Bearer ${token}` });
    assert.ok(typeof first !== 'number');
    assert.equal(await open({ authorization: `Bearer ${token}` }), 503);
    first.close();
  } finally {
    await d.stop();
  }
});
