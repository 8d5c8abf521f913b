// Hook payloads → protocol events, through the plugin entry's register() with a recording fake
// of OpenClaw's plugin api. Payloads are shaped like those seen in openclaw@2026.9.6.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { validateMessage, type Event } from '../protocol/index.ts';
import { Capture, summariseToolResult, MAX_TEXT_CHARS } from '../plugin/capture.ts';
import { clawrlCommand } from '../plugin/commands.ts';
import { HintCache } from '../plugin/hints.ts';
import { OptIns } from '../plugin/optin.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PluginConfig } from '../plugin/config.ts';
import type { LinkStatus } from '../plugin/link.ts';
import { WeightNotices, weightsNotice } from '../plugin/notices.ts';
import { fallbackModel, rerouteWhenDaemonDown, turnHeaders } from '../plugin/provider.ts';
import type { NewEvent } from '../plugin/spool.ts';
import entry from '../plugin/index.ts';
import { fakeApi } from './fake-openclaw.ts';

const RUN = '7c31c57a-b4b0-42f0-acdf-5c1e3a1f8df3';
const SESSION_ID = 'a0e29054-1268-4fb2-bfa9-b6e1a318483b';
const KEY = 'agent:main:main';
const ctx = { runId: RUN, agentId: 'main', sessionKey: KEY, sessionId: SESSION_ID, trigger: 'user', workspaceDir: '/tmp/ws' };

/** A Capture wired to an in-memory sink that numbers and validates events like the spool. */
function recordingCapture(optInByDefault: boolean) {
  const events: Event[] = [];
  const sink = {
    enqueue(e: NewEvent) {
      const event = { ...e, seq: events.length + 1 } as Event;
      validateMessage({ type: 'events', events: [event] });
      events.push(event);
    },
  };
  const warnings: string[] = [];
  const capture = new Capture(sink, new OptIns(optInByDefault), { warn: (m) => void warnings.push(m) });
  const hooks = new Map<string, (event: unknown, ctx: unknown) => void>();
  capture.registerHooks((name, handler) => void hooks.set(name, handler as (event: unknown, ctx: unknown) => void));
  return { capture, events, warnings, fire: (name: string, event: unknown, c: unknown = ctx) => hooks.get(name)!(event, c) };
}

/** One agent turn with a failing exec call, in the order OpenClaw fires the hooks. */
function runTurn(fire: (name: string, event: unknown, c?: unknown) => void) {
  fire('before_agent_run', { prompt: 'list /nope', messages: [] });
  fire('model_call_started', { runId: RUN, callId: `${RUN}:model:1`, sessionKey: KEY, sessionId: SESSION_ID, provider: 'clawrl', model: 'policy' });
  fire('model_call_ended', { runId: RUN, callId: `${RUN}:model:1`, sessionKey: KEY, sessionId: SESSION_ID, durationMs: 100, outcome: 'completed' });
  fire(
    'after_tool_call',
    {
      toolName: 'exec',
      params: { command: 'ls /nope' },
      runId: RUN,
      toolCallId: 'call_exec_1',
      result: {
        content: [{ type: 'text', text: "ls: cannot access '/nope'\n\n(Command exited with code 2)" }],
        details: { status: 'completed', exitCode: 2, exitSignal: null, durationMs: 591, noOutputTimedOut: false },
      },
      durationMs: 1008,
    },
    { toolName: 'exec', agentId: 'main', sessionKey: KEY, sessionId: SESSION_ID, runId: RUN, toolCallId: 'call_exec_1' },
  );
  fire('model_call_started', { runId: RUN, callId: `${RUN}:model:2`, sessionKey: KEY, sessionId: SESSION_ID, provider: 'clawrl', model: 'policy' });
  fire('model_call_ended', { runId: RUN, callId: `${RUN}:model:2`, sessionKey: KEY, sessionId: SESSION_ID, durationMs: 40, outcome: 'completed' });
  fire('agent_end', { runId: RUN, messages: [], success: true, durationMs: 1330 });
  fire('llm_output', {
    runId: RUN,
    sessionId: SESSION_ID,
    provider: 'clawrl',
    model: 'policy',
    assistantTexts: ['The directory does not exist.'],
    lastAssistant: { role: 'assistant', content: [{ type: 'text', text: 'The directory does not exist.' }, { type: 'toolCall', id: 'c9', name: 'read', arguments: { path: 'a' } }] },
    usage: { input: 20, output: 10, cacheRead: 0, cacheWrite: 0, total: 30, cost: { total: 0 } },
  });
}

test('a turn maps to protocol events with its session, run and call ids', () => {
  const { events, warnings, fire } = recordingCapture(true);
  runTurn(fire);
  assert.deepEqual(warnings, []);
  assert.deepEqual(
    events.map((e) => e.kind),
    ['session.optin', 'user.message', 'model.call', 'tool.result', 'model.call', 'run.end', 'model.output'],
  );
  for (const e of events) assert.equal(e.sessionKey, KEY);
  const [, user, call1, tool, call2, runEnd, output] = events;
  assert.deepEqual({ ...user, at: 0 }, { kind: 'user.message', at: 0, seq: 2, sessionKey: KEY, sessionId: SESSION_ID, runId: RUN, content: 'list /nope' });
  assert.equal(call1!.kind === 'model.call' && call1.callId, `${RUN}:model:1`);
  assert.equal(call2!.kind === 'model.call' && call2.side, false);
  assert.ok(tool!.kind === 'tool.result');
  assert.equal(tool.toolCallId, 'call_exec_1');
  assert.equal(tool.exitCode, 2);
  assert.equal(tool.isError, false);
  assert.equal(tool.durationMs, 1008);
  assert.match(tool.output, /exited with code 2/);
  assert.deepEqual(tool.params, { command: 'ls /nope' });
  assert.ok(runEnd!.kind === 'run.end' && runEnd.success && runEnd.runId === RUN);
  assert.ok(output!.kind === 'model.output');
  assert.deepEqual(output.assistantTexts, ['The directory does not exist.']);
  assert.deepEqual(output.toolCalls, [{ id: 'c9', name: 'read', arguments: '{"path":"a"}' }]);
  assert.deepEqual(output.usage, { input: 20, output: 10, total: 30 });
});

test('heartbeat and cron runs are side turns and carry no user message', () => {
  const { events, fire } = recordingCapture(true);
  const side = { ...ctx, trigger: 'heartbeat' };
  fire('before_agent_run', { prompt: 'HEARTBEAT', messages: [] }, side);
  fire('model_call_started', { runId: RUN, callId: 'c1', sessionId: SESSION_ID, provider: 'clawrl', model: 'policy' }, side);
  const call = events.find((e) => e.kind === 'model.call');
  assert.ok(call && call.kind === 'model.call');
  assert.equal(call.side, true);
  assert.equal(call.trigger, 'heartbeat');
  assert.equal(events.some((e) => e.kind === 'user.message'), false);
});

/** A gateway run as openclaw@2026.9.6 fires it for a chat.send (message_received, with no run id, comes first). */
function gatewayRun(fire: (name: string, event: unknown, c?: unknown) => void, runId: string, text: string, outcome: 'completed' | 'error' = 'completed') {
  const c = { ...ctx, runId };
  fire('before_agent_run', { prompt: text, messages: [] }, c);
  fire('model_call_started', { runId, callId: `${runId}:model:1`, sessionKey: KEY, sessionId: SESSION_ID, provider: 'clawrl', model: 'policy' }, c);
  fire('model_call_ended', { runId, callId: `${runId}:model:1`, sessionKey: KEY, sessionId: SESSION_ID, outcome }, c);
  fire('agent_end', { runId, messages: [], success: true }, c);
  fire('llm_output', { runId, sessionId: SESSION_ID, assistantTexts: outcome === 'error' ? ['x'] : [`answer to ${text}`] }, c);
}
const received = (fire: (name: string, event: unknown, c?: unknown) => void, content: string) =>
  fire('message_received', { from: 'cli', content }, { channelId: 'webchat', conversationId: KEY, sessionKey: KEY });

test('gateway: one user.message per message, exactly as typed, with the run it started; commands are none', () => {
  const { events, fire } = recordingCapture(true);
  received(fire, '/clawrl status');
  received(fire, 'hello there');
  gatewayRun(fire, 'run-1', 'hello there');
  received(fire, '/clawrl good');
  received(fire, '/status');
  received(fire, 'second message');
  gatewayRun(fire, 'run-2', 'second message');
  const users = events.filter((e) => e.kind === 'user.message');
  assert.deepEqual(users.map((e) => [e.kind === 'user.message' && e.content, e.runId]), [['hello there', 'run-1'], ['second message', 'run-2']]);
});

test('gateway: two messages that one run takes up are both stored; a hint block in the prompt is not', () => {
  const { events, fire } = recordingCapture(true);
  received(fire, 'first part');
  received(fire, 'second part');
  gatewayRun(fire, 'run-1', `<clawrl-hints>\n- a hint (hint h1)\n</clawrl-hints>\n\nfirst part\nsecond part`);
  assert.deepEqual(events.filter((e) => e.kind === 'user.message').map((e) => e.kind === 'user.message' && e.content), ['first part', 'second part']);
  // Without message_received (agent --local), the run's prompt is the message, hint block stripped.
  gatewayRun(fire, 'run-2', '<clawrl-hints>\n- a hint (hint h1)\n</clawrl-hints>\n\nlocal request');
  assert.equal((events.filter((e) => e.kind === 'user.message').at(-1) as { content: string }).content, 'local request');
});

test('failed model attempts and their retries leave no run.end, no model.output and no second user.message', () => {
  const { events, fire } = recordingCapture(true);
  received(fire, 'do it');
  gatewayRun(fire, 'run-1', 'do it', 'error');
  gatewayRun(fire, 'run-1', '[Queued user message from a previous active turn; preserved as context only.]\ndo it', 'error');
  assert.deepEqual(events.filter((e) => e.kind !== 'model.call').map((e) => e.kind), ['session.optin', 'user.message']);
  // The attempt that works is captured once.
  gatewayRun(fire, 'run-1', 'Continue the current task from the existing transcript.');
  assert.deepEqual(events.filter((e) => e.kind !== 'model.call').map((e) => e.kind), ['session.optin', 'user.message', 'run.end', 'model.output']);
  assert.equal(events.filter((e) => e.kind === 'model.output').length, 1);
  // An attempt whose tool call went through but whose next call broke: its tool result is real, its end is not.
  const c = { ...ctx, runId: 'run-2' };
  fire('before_agent_run', { prompt: 'list it', messages: [] }, c);
  fire('model_call_ended', { runId: 'run-2', callId: 'run-2:model:1', sessionId: SESSION_ID, outcome: 'completed' }, c);
  fire('after_tool_call', { toolName: 'exec', toolCallId: 'call_1', runId: 'run-2', result: { content: [{ type: 'text', text: 'a.txt' }] } }, c);
  fire('model_call_ended', { runId: 'run-2', callId: 'run-2:model:2', sessionId: SESSION_ID, outcome: 'error' }, c);
  fire('agent_end', { runId: 'run-2', success: true }, c);
  fire('llm_output', { runId: 'run-2', sessionId: SESSION_ID, assistantTexts: ['Here are the fi'] }, c);
  const ofRun2 = events.filter((e) => e.runId === 'run-2' && e.kind !== 'model.call').map((e) => e.kind);
  assert.deepEqual(ofRun2, ['user.message', 'tool.result']);
});

test('messages received before opting in are never stored', () => {
  const { capture, events, fire } = recordingCapture(false);
  received(fire, 'private before opt-in');
  capture.setOptIn(KEY, true);
  received(fire, 'after opt-in');
  gatewayRun(fire, 'run-1', 'after opt-in');
  assert.deepEqual(events.filter((e) => e.kind === 'user.message').map((e) => e.kind === 'user.message' && e.content), ['after opt-in']);
  assert.equal(JSON.stringify(events).includes('private'), false);
});

test('nothing of a session that has not opted in is emitted, except its opt-in state', () => {
  const { capture, events, fire } = recordingCapture(false);
  runTurn(fire);
  fire('session_end', { sessionId: SESSION_ID, sessionKey: KEY, messageCount: 3, reason: 'reset' });
  assert.equal(events.length, 0);
  assert.equal(capture.feedback(KEY, { rating: 'good' }), false);
  assert.deepEqual(turnHeaders(capture, { sessionId: SESSION_ID, turnId: 't1' }), { 'x-clawrl-opt-in': '0' });

  capture.setOptIn(KEY, true);
  capture.setOptIn(KEY, false);
  assert.deepEqual(events.map((e) => e.kind), ['session.optin', 'session.optout']);
  runTurn(fire);
  assert.equal(events.length, 2);
});

test('turn headers name the session, run and model call in flight', () => {
  const { capture, fire } = recordingCapture(true);
  fire('before_agent_run', { prompt: 'hi', messages: [] });
  fire('model_call_started', { runId: RUN, callId: `${RUN}:model:1`, sessionId: SESSION_ID, provider: 'clawrl', model: 'policy' });
  assert.deepEqual(turnHeaders(capture, { sessionId: SESSION_ID, turnId: 'turn-1', attempt: 0, transport: 'stream' }), {
    'x-clawrl-opt-in': '1',
    'x-clawrl-side': '0',
    'x-clawrl-session-key': KEY,
    'x-clawrl-session-id': SESSION_ID,
    'x-clawrl-run-id': RUN,
    'x-clawrl-call-id': `${RUN}:model:1`,
    'x-clawrl-turn-id': 'turn-1',
  });
  // After the call ends, a request of the same session (a compaction summary) gets no call id.
  fire('model_call_ended', { runId: RUN, callId: `${RUN}:model:1`, sessionId: SESSION_ID });
  assert.equal(turnHeaders(capture, { sessionId: SESSION_ID, turnId: 'turn-2' })['x-clawrl-call-id'], undefined);
});

test('images in tool results are summarised, never sent', () => {
  const png = Buffer.alloc(1000, 7).toString('base64');
  const summary = summariseToolResult({
    content: [
      { type: 'text', text: 'screenshot taken' },
      { type: 'image', data: png, mimeType: 'image/png' },
      { type: 'image', data: png, mimeType: 'image/png' },
      { type: 'image', data: 'AAAA', mimeType: 'image/jpeg' },
    ],
  });
  assert.deepEqual(summary, { text: 'screenshot taken', image: { count: 3, mimeTypes: ['image/png', 'image/jpeg'], bytes: 2003 } });
  // OpenClaw's hooks get image blocks without their data, with their size.
  assert.deepEqual(summariseToolResult({ content: [{ type: 'image', mimeType: 'image/png', bytes: 5000, omitted: true }] }).image, { count: 1, mimeTypes: ['image/png'], bytes: 5000 });

  const { events, fire } = recordingCapture(true);
  fire('after_tool_call', { toolName: 'browser', toolCallId: 'b1', params: {}, result: { content: [{ type: 'image', data: png, mimeType: 'image/png' }] } });
  const tool = events.find((e) => e.kind === 'tool.result');
  assert.ok(tool && tool.kind === 'tool.result');
  assert.deepEqual(tool.image, { count: 1, mimeTypes: ['image/png'], bytes: 1000 });
  assert.equal(JSON.stringify(tool).includes(png.slice(0, 40)), false);
  // Bytes that are no PNG or JPEG are not measured: the result went out at once, without `screen` (test/screen.test.ts measures real ones).
  assert.equal(tool.screen, undefined);
});

/** A value nested `n` levels deep. */
function deep(n: number): unknown {
  let v: unknown = 'bottom';
  for (let i = 0; i < n; i++) v = { v };
  return v;
}

test('handlers never throw on weird payloads, and emit nothing invalid', () => {
  const { events, warnings, fire } = recordingCapture(true);
  const hookNames = ['before_agent_run', 'model_call_started', 'model_call_ended', 'llm_output', 'after_tool_call', 'message_received', 'agent_end', 'session_start', 'session_end'];
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  const weird: unknown[] = [
    undefined,
    null,
    42,
    'text',
    [],
    { runId: 5, sessionId: {}, callId: [], prompt: 7, content: null, assistantTexts: 'no', lastAssistant: { content: 'x' }, usage: 'lots' },
    { result: { content: [null, 5, { type: 'image', data: 9 }], details: { exitCode: 'two', timedOut: 'yes' } }, params: circular, error: 12 },
    { toolCallId: 'x', result: circular, params: { big: 'y'.repeat(100_000) } },
    { content: 'z'.repeat(MAX_TEXT_CHARS * 2) },
    // Ids past the protocol's bound and params nested past its depth: still valid events.
    { toolCallId: 'i'.repeat(3000), runId: 'r'.repeat(3000), callId: 'c'.repeat(3000), sessionId: 's'.repeat(3000), params: deep(200), toolName: 'exec', result: 'ok' },
    { lastAssistant: { content: [{ type: 'toolCall', id: 't'.repeat(3000), name: 'exec', arguments: deep(100) }] } },
  ];
  const weirdCtx: unknown[] = [undefined, null, 'ctx', { sessionKey: 17 }, { sessionKey: KEY, sessionId: SESSION_ID, trigger: ['user'] }, { ...ctx, runId: 'r'.repeat(3000), toolCallId: 'x'.repeat(3000) }, ctx];
  for (const name of hookNames) for (const event of weird) for (const c of weirdCtx) assert.doesNotThrow(() => fire(name, event, c));
  // The sink validated every event against the protocol schema; no handler failed.
  assert.deepEqual(warnings, []);
  assert.ok(events.length > 0);
  for (const e of events) assert.equal(e.sessionKey, KEY);
  const longest = Math.max(...events.map((e) => JSON.stringify(e).length));
  assert.ok(longest < 4 * MAX_TEXT_CHARS, `an event of ${longest} characters got through`);
  // The deep params arrived, as JSON text.
  assert.ok(events.some((e) => e.kind === 'tool.result' && typeof e.params === 'string' && e.params.startsWith('{"v":{"v":')));
});

test('a handler that fails logs a few times and never throws into the host', () => {
  const failing = new Capture({ enqueue: () => { throw new Error('disk on fire'); } }, new OptIns(true), {
    warn: (m) => void warnings.push(m),
  });
  const warnings: string[] = [];
  const hooks = new Map<string, (event: unknown, ctx: unknown) => void>();
  failing.registerHooks((name, handler) => void hooks.set(name, handler as (event: unknown, ctx: unknown) => void));
  for (let i = 0; i < 20; i++) assert.doesNotThrow(() => hooks.get('agent_end')!({ success: true }, ctx));
  assert.equal(warnings.length, 5);
  assert.match(warnings[0]!, /agent_end handler failed: disk on fire/);
});

test('/clawrl on|off|status|good|bad|hint', () => {
  const { capture, events } = recordingCapture(false);
  const command = clawrlCommand(capture, () => undefined, new HintCache({ url: 'http://127.0.0.1:9/hints', token: '', logger: { warn() {} } }));
  const run = (args: string, sessionKey: string | undefined = KEY) => (command.handler({ args, sessionKey, commandBody: `/clawrl ${args}` }) as { text: string }).text;
  assert.match(run('status'), /not opted in/);
  assert.match(run('good'), /not captured/);
  assert.equal(events.length, 0);
  assert.match(run('on'), /captured for training from here on/);
  assert.match(run(''), /this session: opted in/);
  assert.match(run('bad'), /last turn was bad/);
  assert.match(run('hint   use ls -la  first'), /hint noted/);
  assert.match(run('hint'), /usage/);
  assert.match(run('dance'), /usage/);
  assert.match((command.handler({ args: 'on', commandBody: '/clawrl on' }) as { text: string }).text, /needs a session/);
  assert.match(run('off'), /no longer captured/);
  assert.deepEqual(
    events.map((e) => [e.kind, e.kind === 'feedback' ? (e.rating ?? e.hint) : undefined]),
    [
      ['session.optin', undefined],
      ['feedback', 'bad'],
      ['feedback', 'use ls -la  first'],
      ['session.optout', undefined],
    ],
  );
});

test('register() wires provider, hooks, command and service; config defaults come from the manifest', async () => {
  const { api, hooks, recorded } = fakeApi({ daemonUrl: 'ws://10.0.0.5:7077/ws', token: 'tok', optInByDefault: true });
  entry.register(api);
  assert.equal(entry.id, 'clawrl');
  assert.deepEqual(
    [...hooks.keys()].sort(),
    [
      'after_tool_call',
      'agent_end',
      'before_agent_run',
      'before_model_resolve',
      'before_prompt_build',
      'llm_output',
      'message_received',
      'model_call_ended',
      'model_call_started',
      'reply_payload_sending',
      'session_end',
      'session_start',
    ],
  );
  const [provider] = recorded.providers;
  assert.equal(provider!.id, 'clawrl');
  assert.deepEqual(recorded.commands.map((c) => c.name), ['clawrl']);
  assert.deepEqual(recorded.services.map((s) => s.id), ['clawrl-link']);
  // The catalog asks the daemon's HTTP side (derived from the ws URL), with the token.
  const seen: { url: string; auth: string | null }[] = [];
  const realFetch = globalThis.fetch;
  globalThis.fetch = (async (url: string, init: RequestInit) => {
    seen.push({ url, auth: new Headers(init.headers).get('authorization') });
    return new Response(JSON.stringify({ object: 'list', data: [{ id: 'policy', context_length: 8192 }, { nope: 1 }] }));
  }) as typeof fetch;
  try {
    const result = await provider!.catalog!.run({});
    assert.deepEqual(seen, [{ url: 'http://10.0.0.5:7077/v1/models', auth: 'Bearer tok' }]);
    assert.equal(result!.provider.baseUrl, 'http://10.0.0.5:7077/v1');
    assert.equal(result!.provider.api, 'openai-completions');
    assert.deepEqual(result!.provider.models.map((m) => [m.id, m.contextWindow]), [['policy', 8192]]);
  } finally {
    globalThis.fetch = realFetch;
  }
  // A host without the provider hook's ctx still gets headers, and nothing throws; they name the
  // install (made in its state folder at first use) so the daemon keeps its sessions its own.
  const installFile = join(api.runtime!.state!.resolveStateDir!(process.env), 'clawrl', 'install-id');
  assert.deepEqual(provider!.resolveTransportTurnState!(undefined as never), { headers: { 'x-clawrl-opt-in': '1', 'x-clawrl-side': '0', 'x-clawrl-install': readFileSync(installFile, 'utf8') } });
});

test('weight notices: worded by why the version changed, shown once in front of the next reply the daemon served', () => {
  assert.match(weightsNotice({ version: 'v3', reason: 'trained' }), /New weights v3, trained on recent feedback/);
  assert.match(weightsNotice({ version: 'v3' }), /New weights v3, trained/);
  assert.match(weightsNotice({ version: 'v1', reason: 'rollback' }), /rolled back: v1 answers/);
  assert.match(weightsNotice({ version: 'v2', reason: 'pin' }), /pinned to v2/);
  assert.match(weightsNotice({ version: 'v4', reason: 'unpin' }), /pin was lifted: the latest weights, v4/);
  assert.match(weightsNotice({ version: 'v5', reason: 'adopted' }), /v5, added to the daemon by hand/);

  const notices = new WeightNotices('clawrl');
  const served = { sessionKey: KEY, payload: { text: 'Here you go.' }, usageState: { provider: 'clawrl', model: 'policy' } };
  assert.equal(notices.onReply(served), undefined);
  notices.weightsChanged({ type: 'weights.updated', version: 'v2', recipe: 'combined', metrics: {}, reason: 'trained' }, [KEY]);
  notices.weightsChanged({ type: 'weights.updated', version: 'v1', recipe: 'combined', metrics: {}, reason: 'rollback' }, [KEY]);
  // A command's reply, OpenClaw's own notices and another provider's reply are not the new version's.
  assert.equal(notices.onReply({ sessionKey: KEY, payload: { text: 'clawrl: noted' } }), undefined);
  assert.equal(notices.onReply({ ...served, payload: { text: 'failed', isError: true } }), undefined);
  assert.equal(notices.onReply({ ...served, payload: { text: '↪️ Model Fallback cleared: clawrl/policy', isFallbackNotice: true } }), undefined);
  assert.equal(notices.onReply({ ...served, usageState: { provider: 'backup' } }), undefined);
  assert.equal(notices.onReply({ ...served, sessionKey: 'agent:main:other' }), undefined);
  // The newer change replaced the unread one; it is shown once.
  assert.deepEqual(notices.onReply(served)?.payload, { text: `${weightsNotice({ version: 'v1', reason: 'rollback' })}\n\nHere you go.` });
  assert.equal(notices.onReply(served), undefined);
});

test('daemon down: runs that would use the clawrl provider go to the first configured fallback at once', async () => {
  const openclaw = {
    agents: {
      defaults: { model: { primary: 'clawrl/policy', fallbacks: ['clawrl/other', 'backup/small-model'] } },
      entries: { coder: { model: { primary: 'clawrl/policy', fallbacks: ['hosted/big/v2'] } }, plain: { model: 'clawrl/policy' } },
    },
  };
  assert.deepEqual(fallbackModel(openclaw, 'main'), { provider: 'backup', model: 'small-model' });
  assert.deepEqual(fallbackModel(openclaw, 'coder'), { provider: 'hosted', model: 'big/v2' });
  assert.deepEqual(fallbackModel(openclaw, 'plain'), { provider: 'backup', model: 'small-model' });
  assert.equal(fallbackModel({ agents: { defaults: { model: 'clawrl/policy' } } }, 'main'), undefined);

  // A port nothing listens on: the probe is refused at once.
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((resolve) => closed.close(resolve));
  let link: LinkStatus | undefined;
  const warnings: string[] = [];
  const hook = rerouteWhenDaemonDown({
    config: () => ({ daemonUrl: `ws://127.0.0.1:${port}/ws`, token: 't' }) as PluginConfig,
    openclawConfig: () => openclaw,
    linkStatus: () => link,
    logger: { info() {}, warn: (m) => void warnings.push(m) },
  });
  const clawrlCtx = { agentId: 'main', modelProviderId: 'clawrl', modelId: 'policy' };
  const status = (state: LinkStatus['state'], lastError?: string) => ({ state, lastError, clientId: 'c', url: '', sent: 0, pending: 0, acked: 0, dropped: 0 }) as unknown as LinkStatus;
  // A link that never tried says nothing; a connected one says the daemon is up.
  assert.equal(await hook({}, clawrlCtx), undefined);
  link = status('connected');
  assert.equal(await hook({}, clawrlCtx), undefined);
  link = status('waiting', 'connect ECONNREFUSED');
  assert.deepEqual(await hook({}, clawrlCtx), { providerOverride: 'backup', modelOverride: 'small-model' });
  assert.deepEqual(await hook({}, clawrlCtx), { providerOverride: 'backup', modelOverride: 'small-model' });
  assert.equal(warnings.length, 1, 'rerouting is logged once, not per run');
  assert.match(warnings[0]!, /unreachable .*backup\/small-model/);
  // Runs on another provider are not touched.
  assert.equal(await hook({}, { ...clawrlCtx, modelProviderId: 'backup' }), undefined);
  // The link has not noticed yet that the daemon is back: the probe has.
  const daemon = createServer((_req, res) => res.writeHead(401).end());
  await new Promise<void>((resolve) => daemon.listen(port, '127.0.0.1', resolve));
  try {
    assert.equal(await hook({}, clawrlCtx), undefined);
  } finally {
    await new Promise((resolve) => daemon.close(resolve));
  }
});
