// `clawrl-daemon status --watch` against a real daemon process, and the step line it draws
// while a training step runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { renderWatch } from '../daemon/cli-watch.ts';
import type { Overview } from '../daemon/dashboard.ts';
import { cliPath, spawnDaemon, tempDir, until } from './helpers.ts';
import { closeOps, startOps, trainTo } from './ops-helpers.ts';

test('status --watch keeps printing frames from the running daemon', async () => {
  const dir = tempDir();
  const daemon = await spawnDaemon(dir);
  const watch = spawn(process.execPath, [cliPath, '--data-dir', dir, 'status', '--watch'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  watch.stdout.on('data', (d) => (out += d));
  await until(() => out.split('clawrl daemon ').length > 2, 'two frames', 15_000);
  watch.kill();
  await once(watch, 'exit');
  await daemon.stop();
  const frame = out.split(/(?=clawrl daemon )/)[0]!;
  assert.match(frame, /^serving base · plugins connected 0 · sessions opted in 0 of 0$/m);
  assert.match(frame, /^queues: scoring 0 · training 0\/16 · steps this run 0$/m);
  assert.match(frame, /^ {2}base +reward – · hit rate – · 0 scored$/m);
});

test('while a step runs, the view shows its bar and the time left, from how long recent steps took', async () => {
  const ops = await startOps();
  await trainTo(ops, 1);
  const overview = (await (await fetch(`${ops.daemon.url}/ui/api/overview`, { headers: { authorization: `Bearer ${ops.daemon.token}` } })).json()) as Overview;
  await closeOps(ops);
  assert.equal(overview.step, null, 'no step runs now');
  const text = renderWatch({ ...overview, step: { version: 'v000002', turns: 2, phase: 'training', startedAt: 0, elapsedMs: 15_000, expectedMs: 60_000 } });
  assert.match(text, /^training v000002 on 2 turns ██████░{18} 25% 15 s, about 45 s left$/m);
  assert.match(text, /^serving v000001 ·/m);
  assert.match(text, /per version \(▁ −1 … █ \+1\): █·$/m, 'base served only +1; v000001 has served nothing scored yet');
  assert.match(text, /^ {2}v000001 +reward – · hit rate – · 0 scored · loss -?\d+\.\d{4}$/m);
});
