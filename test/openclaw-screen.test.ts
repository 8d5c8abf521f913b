// A GUI change as a next state, in the real OpenClaw (openclaw@2026.9.6 on Node 24): its browser
// tool drives Debian's Chromium (headless) on a page served here on loopback, with a button that
// changes the page and one that does nothing. A scripted model (the fake vLLM behind a real daemon)
// opens the page, takes a screenshot, clicks each button and looks at the screen in its next
// response, as models do; then clicks with a screenshot in the same response, which OpenClaw runs at
// once with the click (its browser tool is not sequential), so that one says nothing of the click.
// The plugin (the package users install, so its screen worker runs the bundle) measures each
// screenshot against the one before; the stored next states and the rules judge's scores are
// checked. One `agent --local` run. Needs /usr/bin/chromium; skipped without it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ScreenChange } from '../protocol/index.ts';
import { startFakeVllm, type FakeVllm } from './fake-vllm.ts';
import { runCli, spawnDaemon, tempDir, type DaemonProcess } from './helpers.ts';
import { openclawHost, pluginPackage, type OpenclawHost } from './openclaw-host.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)`;

// Buttons without hover or focus styles (Chromium's own darken under the pointer), at fixed places.
const PAGE = `<!doctype html><title>Orders</title><style>button{all:unset;position:absolute;top:200px;border:1px solid #333;padding:6px 12px}</style>
<body style="font:20px sans-serif;margin:40px"><h1>Orders</h1><p id="status">No order yet.</p>
<button id="change" style="left:40px;width:160px" onclick="document.getElementById('status').textContent = 'Order 42 placed: 3 items, shipping Friday.'">Place order</button>
<button id="noop" style="left:300px;width:160px" onclick="void 0">Does nothing</button></body>`;

let host: OpenclawHost;
let fake: FakeVllm;
let daemon: DaemonProcess;
let site: Server;
/** The plugin package: its screen worker runs the bundled JavaScript. */
let plugin: string;
/** The OpenClaw state dir of the test, once made. */
let state: string | undefined;
const dataDir = tempDir('clawrl-oc-screen-');

interface ExportedResult { toolName: string; isError: boolean; output: string; screen?: ScreenChange; startedAt?: number; endedAt?: number }
interface Exported {
  action: { toolCalls: { id: string; name: string; arguments: string }[] };
  nextState: { toolResults: ExportedResult[]; screenAfter?: ExportedResult & { toolCallId: string } };
  reward: number | null;
}

before(async () => {
  if (skip) return;
  site = createServer((_, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE));
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  let n = 0;
  const id = () => `call_${++n}_${Math.random().toString(36).slice(2, 8)}`;
  const browser = (args: object) => ({ id: id(), name: 'browser', arguments: JSON.stringify(args) });
  const clickAt = (x: number) => browser({ action: 'act', kind: 'clickCoords', x, y: 215 });
  // The model's steps, by how many tool results its context holds.
  fake = await startFakeVllm((body) => {
    const results = (body.messages as { role: string }[]).filter((m) => m.role === 'tool').length;
    if (results === 0) return { toolCalls: [browser({ action: 'open', targetUrl: url })] };
    if (results === 2 || results === 4) return { toolCalls: [clickAt(results === 2 ? 380 : 120)] };
    if (results === 1 || results === 3 || results === 5) return { toolCalls: [browser({ action: 'screenshot' })] };
    if (results === 6) return { toolCalls: [clickAt(380), browser({ action: 'screenshot' })] };
    return { text: 'The order is placed.' };
  }, 'policy');
  daemon = await spawnDaemon(dataDir, ['--backend', 'upstream', '--upstream-url', fake.url]);
  host = await openclawHost();
  plugin = await pluginPackage();
});

after(async () => {
  // OpenClaw's browser outlives `agent --local`: its Chromium would keep running through the rest of the suite.
  if (state) spawnSync('pkill', ['-f', '--', `--user-data-dir=${state}`]);
  await daemon?.stop();
  await fake?.close();
  site?.close();
});

test('the browser tool in the real OpenClaw: a click that changes the page and one that does nothing, as stored next states and scores', { skip, timeout: 600_000 }, async () => {
  state = await host.state({
    dataDir,
    daemonUrl: daemon.url,
    plugin,
    configArgs: ['--primary'],
    edit: (config) => {
      config.plugins.entries.clawrl.config.optInByDefault = true;
      // Direct tool schemas: with tool search (the default) the browser tool hides behind tool_call.
      config.tools = { ...config.tools, toolSearch: false };
      // A model that takes images gets the screenshot as an image block (a text-only one gets its path alone).
      for (const model of config.models.providers.clawrl.models) model.input = ['text', 'image'];
      config.browser = { enabled: true, headless: true, noSandbox: true, executablePath: CHROMIUM, ssrfPolicy: { dangerouslyAllowPrivateNetwork: true } };
    },
  });
  const agent = await host.openclawIn(state, ['agent', '--local', '--agent', 'main', '--message', 'place the order on the page'], 300_000);
  assert.match(agent.stdout, /The order is placed\./);

  // The seven tool-calling turns, once scored (the rules judge: no judge model is configured).
  let turns: Exported[] = [];
  for (let i = 0; i < 150; i++) {
    const out = await runCli(dataDir, ['sessions', 'export', '--json']);
    turns = (out.stdout.trim() ? out.stdout.trim().split('\n').map((l) => JSON.parse(l)) : []).filter((t: Exported) => t.action.toolCalls.length > 0);
    if (turns.length >= 7 && turns.every((t) => t.reward !== null)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(turns.length, 7, JSON.stringify(turns));
  const [, firstShot, noop, afterNoop, change, afterChange, beside] = turns as [Exported, Exported, Exported, Exported, Exported, Exported, Exported];
  const screenOf = (t: Exported) => t.nextState.toolResults.find((r) => r.screen)?.screen;
  const firstScreen = screenOf(firstShot)!;
  assert.ok(firstScreen.width > 0 && firstScreen.height > 0 && firstScreen.comparedTo === undefined, JSON.stringify(firstScreen));

  // The button that does nothing: the next response's screenshot is the one before the click, cell for cell.
  assert.match(noop.action.toolCalls[0]!.arguments, /"x":380/);
  assert.equal(noop.nextState.screenAfter?.toolCallId, afterNoop.action.toolCalls[0]!.id);
  assert.deepEqual(noop.nextState.screenAfter.screen, { ...firstScreen, changedShare: 0, hashDistance: 0, comparedTo: firstShot.action.toolCalls[0]!.id });
  assert.equal(noop.reward, -1, 'a click that changed nothing is a failed action');
  // The button that changes the page: one line of text.
  assert.match(change.action.toolCalls[0]!.arguments, /"x":120/);
  const changed = change.nextState.screenAfter?.screen;
  assert.equal(changed?.comparedTo, afterNoop.action.toolCalls[0]!.id);
  assert.ok(changed.changedShare! > 0.005 && changed.changedShare! < 0.2, JSON.stringify(changed));
  assert.equal(change.reward, 0, 'a change is no evidence of success without pixels');
  assert.equal(screenOf(afterChange)?.changedShare, changed.changedShare, 'the screenshot is also its own turn\'s next state');

  // A click and a screenshot in one response: OpenClaw ran them at once, so the screenshot may
  // predate the click's effect; the times show it, and the click is not judged by it.
  const [clickRan, shotRan] = beside.nextState.toolResults as [ExportedResult, ExportedResult];
  assert.ok(shotRan.screen && shotRan.startedAt !== undefined && clickRan.endedAt !== undefined && shotRan.startedAt < clickRan.endedAt, JSON.stringify(beside.nextState));
  assert.equal(beside.nextState.screenAfter, undefined);
  assert.equal(beside.reward, 0, 'whatever the screenshot beside it shows');

  // No pixels left the plugin (sendScreenshots is off by default): no copy, no image data.
  assert.equal(changed.screenshot, undefined);
  const sessionKey = (await runCli(dataDir, ['sessions', 'list', '--json'])).stdout.trim().split('\n').map((l) => JSON.parse(l))[0].sessionKey;
  const shown = (await runCli(dataDir, ['sessions', 'show', sessionKey])).stdout;
  assert.doesNotMatch(shown, /iVBORw0KGgo|\/9j\//, 'no PNG or JPEG data is stored');
  // OpenClaw hands hooks the image without its data; its size still arrives.
  assert.ok(JSON.parse(shown).events.some((e: { image?: { bytes: number } }) => (e.image?.bytes ?? 0) > 1000));
});
