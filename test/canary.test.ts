// Canary rollout in a real daemon (tiny embedded policy, real training, two adapters served side
// by side by the embedded backend's serving worker): a new version serves only its share of
// sessions, each session stays on one side, and the guard's test ends the canary, rolling it back
// (training goes on from the version serving everyone) or promoting it to all traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inCanary } from '../daemon/canary.ts';
import type { WeightsListing } from '../daemon/control.ts';
import { until } from './helpers.ts';
import { closeOps, serve, startOps, type Ops } from './ops-helpers.ts';

const BATCH = 12;
const SESSIONS = Array.from({ length: 12 }, (_, i) => `agent:main:canary-${i}`);

async function rated(ops: Ops, session: string, rating: 'good' | 'bad'): Promise<string> {
  const version = await serve(ops, `request ${ops.seq}`, session);
  await ops.client.sendEvents([{ kind: 'feedback', seq: ++ops.seq, at: Date.now(), sessionKey: session, rating }]);
  return version;
}

/** Whether the session's newest reply is a scored turn, and nothing waits to be scored. */
function scored(ops: Ops, session: string): boolean {
  const [last] = ops.daemon.store.samplesOf(session, { newestFirst: true });
  return last !== undefined && ops.daemon.store.scores.get([session, last.ordinal]) !== undefined && ops.daemon.store.unscoredKeys().length === 0;
}

async function verdictOf(ops: Ops, version: string) {
  const res = await fetch(`${ops.daemon.url}/weights`, { headers: { authorization: `Bearer ${ops.daemon.token}` } });
  return ((await res.json()) as WeightsListing).versions.find((v) => v.version === version)?.verdict ?? null;
}

test('inCanary: about the share of sessions, the same answer every time, drawn afresh per version', () => {
  const sessions = Array.from({ length: 2000 }, (_, i) => `s${i}`);
  const share = sessions.filter((s) => inCanary(s, 'v000001', 0.2)).length / sessions.length;
  assert.ok(Math.abs(share - 0.2) < 0.03, `share ${share}`);
  assert.ok(sessions.every((s) => inCanary(s, 'v000001', 0.2) === inCanary(s, 'v000001', 0.2)));
  const moved = sessions.filter((s) => inCanary(s, 'v000001', 0.2) !== inCanary(s, 'v000002', 0.2)).length;
  assert.ok(moved > 400, `${moved} sessions changed side between versions`);
  assert.equal(inCanary('s1', 'v000001', 0), false);
  assert.equal(inCanary('s1', 'v000001', 1), true);
});

test('a canary serves its share of sessions only, is rolled back when rated worse, and a later one is promoted', async () => {
  const ops = await startOps({ recipeOptions: { batchSize: BATCH, lr: 1e-3 }, maxWaitMs: 3_600_000, canary: 0.5 });
  try {
    const trainer = ops.daemon.trainer!;
    for (let i = 0; i < BATCH; i++) await rated(ops, SESSIONS[i % SESSIONS.length]!, 'good');
    await until(() => trainer.status().canary?.version === 'v000001' && trainer.status().step === null, 'v000001 on canary', 30_000);
    assert.equal(trainer.status().serving, 'base', 'the main version still serves everyone else');
    const side = (s: string) => (inCanary(s, 'v000001', 0.5) ? 'v000001' : 'base');
    const onCanary = SESSIONS.filter((s) => side(s) === 'v000001');
    assert.ok(onCanary.length > 0 && onCanary.length < SESSIONS.length, 'both sides have sessions');
    // Each session stays on its side, request after request; requests without a session stay on base.
    for (const s of SESSIONS) for (let i = 0; i < 2; i++) assert.equal(await serve(ops, 'which version?', s), side(s), s);
    const anonymous = await fetch(`${ops.daemon.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ops.daemon.token}` },
      body: JSON.stringify({ model: 'clawrl-embedded', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }),
    });
    assert.equal(((await anonymous.json()) as { system_fingerprint: string }).system_fingerprint, 'base');

    // The canary's sessions rate it bad, the others rate base good: rolled back, training from base.
    // Each look waits for the rated turns to be scored (the pipeline scores them after the ack, on
    // its own time). A look that lags runs more rounds, whose turns wait to train: the next canary
    // is decided below with 45 turns waiting, and at 48 (HOLD_BATCHES batches) the hold would
    // promote it undecided.
    for (let i = 0; trainer.status().canary !== null; i++) {
      assert.ok(i < 4 * BATCH, 'the canary was decided');
      const s = SESSIONS[i % SESSIONS.length]!;
      await rated(ops, s, side(s) === 'v000001' ? 'bad' : 'good');
      await until(() => scored(ops, s), 'the rated turn scored');
      await ops.daemon.guard!.nudge();
    }
    assert.equal(trainer.status().serving, 'base');
    const verdict = await verdictOf(ops, 'v000001');
    assert.equal(verdict?.state, 'rolled-back');
    assert.match(verdict!.reason, /^significantly worse than base/);
    // (A next version may already be on canary: the turns queued meanwhile train at once.)
    for (const s of onCanary) assert.notEqual(await serve(ops, 'after the rollback', s), 'v000001');

    // The next version trains from base and goes on canary; rated as well as base, then better, it is promoted.
    await until(() => trainer.status().canary !== null && trainer.status().step === null, 'the next canary', 30_000);
    const next = trainer.status().canary!.version;
    assert.equal(ops.daemon.store.versions.get(next)!.parent, 'base');
    const canarySessions = SESSIONS.filter((s) => inCanary(s, next, 0.5));
    const others = SESSIONS.filter((s) => !inCanary(s, next, 0.5));
    for (let i = 0; trainer.status().canary !== null; i++) {
      assert.ok(i < 2 * BATCH, 'the canary was decided');
      const [good, bad] = [canarySessions[i % canarySessions.length]!, others[i % others.length]!];
      await rated(ops, good, 'good');
      await rated(ops, bad, 'bad');
      await until(() => scored(ops, good) && scored(ops, bad), 'the rated turns scored');
      await ops.daemon.guard!.nudge();
    }
    assert.equal(trainer.status().serving, next);
    const promoted = await verdictOf(ops, next);
    assert.equal(promoted?.state, 'promoted');
    assert.match(promoted!.reason, /^not worse than base by 0\.1 or more/);
    const notice = await ops.client.next((m) => m.type === 'weights.updated' && m.version === next);
    assert.equal((notice as { reason: string }).reason, 'trained');
    // Everyone is on it now, or on the canary of the version trained next from it (the turns
    // queued meanwhile train at once).
    for (const s of SESSIONS.slice(0, 3)) {
      const served = await serve(ops, 'after the promotion', s);
      assert.ok(served === next || ops.daemon.store.versions.get(served)?.parent === next, `${s} got ${served}`);
    }
  } finally {
    await closeOps(ops);
  }
});
