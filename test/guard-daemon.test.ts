// The guard in a real daemon (tiny embedded policy, real training, real LMDB and HTTP): a version
// whose served turns are rated far below its parent's is rolled back on its own, the plugin is
// told (weights.updated, reason 'rollback'), /weights, /status and /metrics say why, training
// continues from the parent, and a person's rollback to the version wins over the guard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { WeightsListing } from '../daemon/control.ts';
import { dirname } from 'node:path';
import { runCli, until } from './helpers.ts';
import { SESSION, closeOps, serve, startOps, type Ops } from './ops-helpers.ts';

const BATCH = 12;

async function rated(ops: Ops, rating: 'good' | 'bad'): Promise<string> {
  const version = await serve(ops, `request ${ops.seq}`);
  await ops.client.sendEvents([{ kind: 'feedback', seq: ++ops.seq, at: Date.now(), sessionKey: SESSION, rating }]);
  return version;
}

const scoredTurns = (ops: Ops, version: string): number => ops.daemon.store.servedByVersion().get(version)?.rated ?? 0;

async function get<T>(ops: Ops, path: string): Promise<T> {
  const res = await fetch(`${ops.daemon.url}${path}`, { headers: { authorization: `Bearer ${ops.daemon.token}` } });
  assert.equal(res.status, 200);
  return (path === '/metrics' ? await res.text() : await res.json()) as T;
}

test('a version rated significantly worse than its parent is rolled back, training goes on from the parent, and a manual rollback wins', async () => {
  const ops = await startOps({ recipeOptions: { batchSize: BATCH, lr: 1e-3 }, maxWaitMs: 3_600_000 });
  try {
    const { trainer } = ops.daemon;
    for (let i = 0; i < BATCH; i++) await rated(ops, 'good');
    await until(() => trainer!.status().serving === 'v000001' && trainer!.status().step === null, 'v000001 serving', 30_000);
    // v1 is rated bad on every turn: caught once both sides have 10 scored turns. Each look waits
    // for the rated turn to be scored: the pipeline scores it after the ack, on its own time.
    let served = 0;
    while (trainer!.status().serving === 'v000001') {
      assert.ok(served < BATCH - 1, 'rolled back before a second batch filled');
      if ((await rated(ops, 'bad')) === 'v000001') {
        served++;
        await until(() => scoredTurns(ops, 'v000001') >= served || trainer!.status().serving !== 'v000001', 'the rated turn scored');
      }
      await ops.daemon.guard!.nudge();
    }
    assert.equal(trainer!.status().serving, 'base');
    const notice = await ops.client.next((m) => m.type === 'weights.updated' && m.reason === 'rollback');
    assert.equal((notice as { version: string }).version, 'base');

    const listing = await get<WeightsListing>(ops, '/weights');
    const v1 = listing.versions.find((v) => v.version === 'v000001')!;
    assert.equal(v1.verdict?.state, 'rolled-back');
    assert.equal(v1.verdict?.by, 'guard');
    assert.match(v1.verdict!.reason, /^significantly worse than base: reward -1\.00 over \d+ turns vs \+1\.00 over 12/);
    assert.equal(v1.health!.reward.mean, -1);
    assert.ok(v1.health!.reward.high! < 0 && v1.health!.entropy! > 0 && v1.health!.replyTokens! > 0);
    // Drift to base, measured by the guard on v1's served tokens with the base weights.
    assert.ok(v1.health!.driftReplies > 0 && Number.isFinite(v1.health!.drift));
    assert.equal(listing.base!.reward.mean, 1);

    const status = await get<{ guard: { lastRollback: { from: string; to: string } }; health: { version: string } }>(ops, '/status');
    assert.deepEqual([status.guard.lastRollback.from, status.guard.lastRollback.to, status.health.version], ['v000001', 'base', 'base']);
    const metrics = await get<string>(ops, '/metrics');
    assert.match(metrics, /clawrl_version_rolled_back\{version="v000001"\} 1/);
    assert.match(metrics, /clawrl_version_served_reward_bound\{version="v000001",bound="high"\} -0\.\d+/);
    assert.match(metrics, /clawrl_version_entropy_nats\{version="base"\} \d/);

    // Training continues from base: the next version's parent is base, not v1.
    while (trainer!.status().steps < 2) await rated(ops, 'good');
    await until(() => trainer!.status().step === null && trainer!.status().serving === 'v000002', 'v000002 serving', 30_000);
    assert.equal(ops.daemon.store.versions.get('v000002')!.parent, 'base');

    // A person brings v1 back: the guard leaves it serving though its record is bad.
    const res = await fetch(`${ops.daemon.url}/weights/rollback`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ops.daemon.token}` },
      body: JSON.stringify({ version: 'v000001' }),
    });
    assert.equal(res.status, 200);
    for (let i = 0; i < 3; i++) await rated(ops, 'bad');
    await ops.daemon.guard!.nudge();
    assert.equal(trainer!.status().serving, 'v000001');
    const kept = (await get<WeightsListing>(ops, '/weights')).versions.find((v) => v.version === 'v000001')!;
    assert.deepEqual([kept.verdict?.state, kept.verdict?.by], ['kept', 'person']);
  } finally {
    await closeOps(ops);
  }
  // With the daemon stopped, `weights list` reads the same from the store: health lines and verdicts.
  const { code, stdout } = await runCli(dirname(ops.daemon.store.path), ['weights', 'list']);
  assert.equal(code, 0);
  assert.match(stdout, /^ {2}base\treward \+\d\.\d\d \[[-+]\d\.\d\d, [-+]\d\.\d\d\] over \d+ scored · entropy \d+\.\d\d nats\/token · distinct-2 \d\.\d\d · \d+\.\d tokens\/reply/m);
  assert.match(stdout, /^ {4}kept by person at \S+: rolled back to by hand$/m);
  assert.match(stdout, /^ {4}reward -1\.00 \[-1\.00, -0\.\d\d\] over \d+ scored · entropy/m);
});
