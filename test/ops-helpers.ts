// Shared by the operations tests (metrics, dashboard): an in-process daemon on a tiny embedded
// policy with batches of two, and served replies rated by explicit feedback, so that real
// training steps (and so real weight versions) come within seconds.
import assert from 'node:assert/strict';
import { startDaemon, type Daemon, type DaemonOptions } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { EmbeddedBackend } from '../daemon/backends/embedded/index.ts';
import { TestClient, optIn, tempDir, until } from './helpers.ts';

export const SESSION = 'agent:main:ops';

export interface Ops {
  daemon: Daemon;
  client: TestClient;
  /** The client's last event seq. */
  seq: number;
}

export async function startOps(opts: Partial<DaemonOptions> = {}): Promise<Ops> {
  const daemon = await startDaemon({
    dataDir: tempDir(),
    port: 0,
    log: createLogger('silent'),
    backend: await EmbeddedBackend.create({ model: { dim: 32, layers: 1, heads: 2, context: 128, seed: 5 } }),
    recipeOptions: { batchSize: 2, lr: 1e-3 },
    ...opts,
  });
  const client = await TestClient.connect(daemon.wsUrl, daemon.token);
  await client.hello('ops-test');
  const ops = { daemon, client, seq: 0 };
  await client.sendEvents([optIn(++ops.seq, SESSION)]);
  return ops;
}

/** One reply served to the session; resolves with its weight version once its sample is stored. */
export async function serve(ops: Ops, content: string, session = SESSION): Promise<string> {
  const res = await fetch(`${ops.daemon.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ops.daemon.token}`, 'x-clawrl-session-key': session, 'x-clawrl-opt-in': '1' },
    body: JSON.stringify({ model: 'clawrl-embedded', messages: [{ role: 'user', content }], max_tokens: 6 }),
  });
  assert.equal(res.status, 200);
  const { id, system_fingerprint: version } = (await res.json()) as { id: string; system_fingerprint: string };
  await until(() => ops.daemon.store.samples.get(id), 'the sample');
  return version;
}

/** Replies rated good (or bad) by `/clawrl good|bad` until the trainer has made `steps` versions. */
export async function trainTo(ops: Ops, steps: number, rating: 'good' | 'bad' = 'good'): Promise<void> {
  const trainer = ops.daemon.trainer!;
  while (trainer.status().steps < steps) {
    const before = trainer.status().steps;
    for (let i = 0; i < trainer.status().batchSize; i++) {
      await serve(ops, `request ${ops.seq}`);
      await ops.client.sendEvents([{ kind: 'feedback', seq: ++ops.seq, at: Date.now(), sessionKey: SESSION, rating }]);
    }
    // Counted once its version is written; done once the swap after it has finished too.
    await until(() => trainer.status().steps > before && trainer.status().step === null, 'a training step', 30_000);
  }
}

export async function closeOps(ops: Ops): Promise<void> {
  ops.client.close();
  await ops.daemon.close();
}
