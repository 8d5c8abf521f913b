// GET /metrics after real traffic: the counters move by exactly what was sent (events, served
// requests, scores, judge calls), the store's commits are counted, a training step moves the step counter and the version gauge,
// and the endpoint wants the token unless the daemon was started with it public.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startDaemon } from '../daemon/server.ts';
import { createLogger } from '../daemon/log.ts';
import { startFakeVllm } from './fake-vllm.ts';
import { tempDir, until, userMessage } from './helpers.ts';
import { SESSION, closeOps, serve, startOps, trainTo, type Ops } from './ops-helpers.ts';

type Labels = Record<string, string>;
const key = (name: string, labels: Labels = {}) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;

/** The text exposition format as "name{label=value,…}" (labels sorted) → value; every sample line must parse. */
function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => [k!, v!]));
    samples.set(key(m[1]!, labels), Number(m[3]));
  }
  return samples;
}

/** One scrape; a series not (yet) exposed reads 0, as a counter that never moved. */
async function scrape(ops: Ops): Promise<(name: string, labels?: Labels) => number> {
  const res = await fetch(`${ops.daemon.url}/metrics`, { headers: { authorization: `Bearer ${ops.daemon.token}` } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const samples = parseExposition(await res.text());
  return (name, labels) => samples.get(key(name, labels)) ?? 0;
}

test('event counters move by the events sent: received, acked, stored, dropped, duplicates', async () => {
  const ops = await startOps();
  assert.equal((await fetch(`${ops.daemon.url}/metrics`)).status, 401);
  const before = await scrape(ops);
  const events = Array.from({ length: 5 }, () => userMessage(++ops.seq, SESSION));
  await ops.client.sendEvents(events);
  await ops.client.sendEvents([userMessage(++ops.seq, 'agent:main:not-opted-in'), userMessage(++ops.seq, 'agent:main:not-opted-in')]);
  await ops.client.sendEvents(events.slice(0, 3)); // replayed, as after a reconnect
  const after = await scrape(ops);
  const delta = (name: string, labels?: Labels) => after(name, labels) - before(name, labels);
  assert.deepEqual(
    {
      received: delta('clawrl_events_received_total'),
      acked: delta('clawrl_events_acked_total'),
      stored: delta('clawrl_events_stored_total'),
      dropped: delta('clawrl_events_dropped_total', { reason: 'not_opted_in' }),
      duplicates: delta('clawrl_events_duplicate_total'),
    },
    { received: 10, acked: 10, stored: 5, dropped: 2, duplicates: 3 },
  );
  // Each acked batch was a durable commit of its own (the test awaited each ack before the next).
  assert.ok(delta('clawrl_store_commits_total') >= 3, `commits: ${delta('clawrl_store_commits_total')}`);
  assert.ok(delta('clawrl_store_pages_written_total') >= delta('clawrl_store_commits_total'), 'every commit writes at least a page');
  assert.ok(delta('clawrl_store_sync_seconds_total') > 0, 'the commits were synced');
  assert.ok(delta('clawrl_store_write_seconds_total') > 0);
  assert.equal(after('clawrl_plugin_connections'), 1);
  assert.equal(after('clawrl_sessions', { opted_in: 'true' }), 1);
  assert.ok(after('clawrl_backend_memory_bytes', { kind: 'rss' }) > 1e6, 'the embedded backend reports the process RSS');
  assert.ok(after('process_resident_memory_bytes') > 1e6, 'the default process metrics are there');
  await closeOps(ops);
});

test('serving, scoring, judge votes and a training step show up in /metrics', async () => {
  const judge = await startFakeVllm([{ text: 'It worked. \\boxed{1}' }]);
  const ops = await startOps({ judge: { kind: 'endpoint', baseUrl: judge.url, model: 'fake-model' } });
  const before = await scrape(ops);
  assert.equal(before('clawrl_weight_version_info', { version: 'base', pinned: 'false' }), 1);
  assert.equal(before('clawrl_weight_version_number'), 0);

  await trainTo(ops, 1); // two replies rated good by feedback, one step
  // A third reply, judged: the user's next message is its next state.
  await serve(ops, 'one more');
  await ops.client.sendEvents([userMessage(++ops.seq, SESSION, 'thanks, that did it')]);
  await until(() => ops.daemon.scoring.status().scored === 3, 'the judged turn');

  const m = await scrape(ops);
  const chat = { endpoint: 'chat_completions' };
  assert.deepEqual(
    {
      steps: m('clawrl_training_steps_total'),
      stepTimings: m('clawrl_training_step_seconds_count'),
      version: m('clawrl_weight_version_number'),
      info: m('clawrl_weight_version_info', { version: 'v000001', pinned: 'false' }),
      baseInfo: m('clawrl_weight_version_info', { version: 'base', pinned: 'false' }),
      requests: m('clawrl_serving_requests_total', { ...chat, status: '200' }),
      timed: m('clawrl_serving_request_seconds_count', chat),
      tokenRates: m('clawrl_serving_tokens_per_second_count'),
      feedbackGood: m('clawrl_scores_total', { source: 'feedback', score: 'good' }),
      judgedGood: m('clawrl_scores_total', { source: 'judge', score: 'good' }),
      votesGood: m('clawrl_judge_votes_total', { vote: 'good' }),
      judgeCalls: m('clawrl_judge_request_seconds_count', { outcome: 'ok' }),
      closedSamples: m('clawrl_samples', { state: 'closed' }),
      turnsDone: m('clawrl_turns', { state: 'done' }),
      turnsWaiting: m('clawrl_turns', { state: 'awaiting_training' }),
      trainingQueue: m('clawrl_training_queue_depth'),
      batchReward: m('clawrl_version_batch_mean_reward', { version: 'v000001' }),
      baseReward: m('clawrl_version_served_mean_reward', { version: 'base' }),
      baseHitRate: m('clawrl_version_served_hit_rate', { version: 'base' }),
      baseTurns: m('clawrl_version_served_turns', { version: 'base' }),
    },
    {
      steps: 1,
      stepTimings: 1,
      version: 1,
      info: 1,
      baseInfo: 0,
      requests: 3,
      timed: 3,
      tokenRates: 3,
      feedbackGood: 2,
      judgedGood: 1,
      votesGood: 3,
      judgeCalls: judge.requests.length,
      closedSamples: 3,
      turnsDone: 2,
      turnsWaiting: 1,
      trainingQueue: 1,
      batchReward: 1,
      baseReward: 1,
      baseHitRate: 1,
      baseTurns: 2,
    },
  );
  assert.ok(judge.requests.length >= 3, 'the judge was asked');
  assert.ok(m('clawrl_serving_tokens_total', { kind: 'completion' }) > 0);
  assert.ok(Number.isFinite(m('clawrl_version_loss', { version: 'v000001' })) && m('clawrl_version_loss', { version: 'v000001' }) !== 0);
  await closeOps(ops);
  await judge.close();
});

test('--metrics-public serves /metrics without the token; everything else still wants it', async () => {
  const daemon = await startDaemon({ dataDir: tempDir(), port: 0, log: createLogger('silent'), metricsPublic: true });
  const res = await fetch(`${daemon.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^clawrl_weight_version_info\{version="base",pinned="false"\} 1$/m);
  assert.equal((await fetch(`${daemon.url}/status`)).status, 401);
  await daemon.close();
});
