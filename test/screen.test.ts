// Screen changes from real screenshots: Debian's Chromium (through playwright-core) shows a page
// with a button that changes it and one that does nothing; its PNG and JPEG screenshots go through
// the plugin's real after_tool_call hook, measured in the real screen worker. Needs
// /usr/bin/chromium (CI: apt-get install chromium); skipped without it.
import { strict as assert } from 'node:assert';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import jpeg from 'jpeg-js';
import { chromium, type Browser, type Page } from 'playwright-core';
import { validateMessage, type Event, type ToolResultEvent } from '../protocol/index.ts';
import { Capture } from '../plugin/capture.ts';
import { OptIns } from '../plugin/optin.ts';
import { analyse, compare, decodeImage, imageSize, loadCodecs } from '../plugin/screen.ts';
import { Spool, type NewEvent } from '../plugin/spool.ts';
import entry from '../plugin/index.ts';
import { fakeApi } from './fake-openclaw.ts';
import { tempDir, until } from './helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing (apt-get install chromium)`;
const KEY = 'agent:main:main';
const ctx = { sessionKey: KEY, sessionId: 'screen-session', runId: 'run-1' };

// Buttons without hover or focus styles: Chromium's own button turns darker under the pointer,
// so a click on it always changes a few cells, even when the click does nothing else.
const PAGE = `<!doctype html><style>button{all:unset;border:1px solid #333;padding:6px 12px;margin-right:12px}</style>
<body style="font:20px sans-serif;margin:40px"><h1>Orders</h1><p id="status">No order yet.</p>
<button id="change" onclick="document.getElementById('status').textContent = 'Order 42 placed: 3 items, shipping Friday.'">Place order</button>
<button id="noop" onclick="void 0">Does nothing</button></body>`;

let browser: Browser;
let page: Page;

before(async () => {
  if (skip) return;
  browser = await chromium.launch({ executablePath: CHROMIUM });
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  await page.setContent(PAGE);
});
after(() => browser?.close());

/** A Capture on an in-memory sink that validates every event like the daemon does. */
function recordingCapture(screenshots?: { maxSide: number; maxBytes: number }) {
  const events: Event[] = [];
  const warnings: string[] = [];
  const capture = new Capture(
    {
      enqueue(e: NewEvent) {
        const event = { ...e, seq: events.length + 1 } as Event;
        validateMessage({ type: 'events', events: [event] });
        events.push(event);
      },
    },
    new OptIns(true),
    { warn: (m) => void warnings.push(m) },
    screenshots,
  );
  const hooks = new Map<string, (event: unknown, ctx: unknown) => void>();
  capture.registerHooks((name, handler) => void hooks.set(name, handler as (event: unknown, ctx: unknown) => void));
  /** Fires after_tool_call with a screenshot and waits for its tool.result. */
  const screenshot = async (toolCallId: string, bytes: Uint8Array, toolName = 'browser', mimeType = 'image/png'): Promise<ToolResultEvent> => {
    hooks.get('after_tool_call')!({ toolName, toolCallId, params: { action: 'screenshot' }, result: { content: [{ type: 'text', text: 'ok' }, { type: 'image', data: Buffer.from(bytes).toString('base64'), mimeType }] } }, ctx);
    return until(() => events.find((e): e is ToolResultEvent => e.kind === 'tool.result' && e.toolCallId === toolCallId), `the result of ${toolCallId}`);
  };
  return { capture, events, warnings, screenshot, fire: (name: string, event: unknown) => hooks.get(name)!(event, ctx) };
}

test('a click that changes the page reads as a change, one that does nothing as none, in PNG and JPEG; pixels stay in the plugin', { skip, timeout: 120_000 }, async () => {
  const { capture, events, warnings, screenshot } = recordingCapture();
  try {
    for (const [tool, type] of [['browser', 'png'], ['computer', 'jpeg']] as const) {
      await page.setContent(PAGE);
      const shot = () => page.screenshot({ type, ...(type === 'jpeg' && { quality: 80 }) });
      const first = await screenshot(`${tool}-1`, await shot(), tool, `image/${type}`);
      assert.deepEqual(first.screen, { width: 1280, height: 720 }, 'the first screenshot has nothing to compare with');

      await page.click('#noop');
      const unchanged = await screenshot(`${tool}-2`, await shot(), tool, `image/${type}`);
      assert.deepEqual(unchanged.screen, { width: 1280, height: 720, changedShare: 0, hashDistance: 0, comparedTo: `${tool}-1` });

      await page.click('#change');
      const changed = await screenshot(`${tool}-3`, await shot(), tool, `image/${type}`);
      assert.equal(changed.screen?.comparedTo, `${tool}-2`);
      assert.ok(changed.screen!.changedShare! > 0.005 && changed.screen!.changedShare! < 0.05, `one line of text changed: ${JSON.stringify(changed.screen)}`);
    }
    // Each tool is compared with its own last screenshot; no copy of the pixels left the plugin.
    assert.equal(events.some((e) => e.kind === 'tool.result' && e.screen?.screenshot !== undefined), false);
    assert.ok(JSON.stringify(events).length < 10_000);
    assert.deepEqual(warnings, []);
  } finally {
    await capture.screens.close();
  }
});

test('sendScreenshots: a downscaled JPEG within the size cap; a session that ends forgets its screens; a screenshot from the file OpenClaw names; a broken image still sends its result', { skip, timeout: 120_000 }, async () => {
  const { capture, events, screenshot, fire } = recordingCapture({ maxSide: 400, maxBytes: 16_384 });
  try {
    await page.setContent(PAGE);
    const png = await page.screenshot({ type: 'png' });
    const sent = await screenshot('c1', png);
    const copy = sent.screen?.screenshot;
    assert.ok(copy, 'a copy was sent');
    assert.equal(copy.mimeType, 'image/jpeg');
    const bytes = Buffer.from(copy.data, 'base64');
    assert.ok(bytes.length <= 16_384, `${bytes.length} bytes`);
    const decoded = jpeg.decode(bytes);
    assert.deepEqual([decoded.width, decoded.height, copy.width, copy.height], [400, 225, 400, 225]);

    fire('session_end', { sessionId: ctx.sessionId, sessionKey: KEY });
    const afterEnd = await screenshot('c2', png);
    assert.equal(afterEnd.screen?.comparedTo, undefined);

    // As OpenClaw hands it to hooks: the image's data taken out, the browser tool's file in details.path.
    const file = join(tempDir('clawrl-screen-'), 'shot.png');
    writeFileSync(file, png);
    fire('after_tool_call', { toolName: 'browser', toolCallId: 'c2b', params: {}, result: { content: [{ type: 'image', mimeType: 'image/png', bytes: png.length, omitted: true }], details: { ok: true, path: file } } });
    const fromFile = await until(() => events.find((e): e is ToolResultEvent => e.kind === 'tool.result' && e.toolCallId === 'c2b'), 'the result of c2b');
    assert.deepEqual({ ...fromFile.screen, screenshot: undefined }, { width: 1280, height: 720, changedShare: 0, hashDistance: 0, comparedTo: 'c2', screenshot: undefined });
    assert.equal(fromFile.image?.bytes, png.length);

    // A PNG header over garbage: the worker cannot decode it, and the result goes out without `screen`.
    const broken = Buffer.concat([png.subarray(0, 33), Buffer.alloc(500, 1)]);
    const result = await screenshot('c3', broken);
    assert.equal(result.screen, undefined);
    assert.equal(result.output, 'ok');
  } finally {
    await capture.screens.close();
  }
});

test('sizes from headers match the decoded images; a resized screen is compared by its hash alone', { skip, timeout: 60_000 }, async () => {
  const codecs = await loadCodecs();
  await page.setContent(PAGE);
  const png = await page.screenshot({ type: 'png' });
  const jpg = await page.screenshot({ type: 'jpeg' });
  for (const bytes of [png, jpg]) {
    const pixels = decodeImage(codecs, bytes)!;
    assert.deepEqual(imageSize(bytes), { width: pixels.width, height: pixels.height });
  }
  await page.setViewportSize({ width: 1000, height: 700 });
  const smaller = await page.screenshot({ type: 'png' });
  await page.setViewportSize({ width: 1280, height: 720 });
  const change = compare(analyse(codecs, png)!.print, analyse(codecs, smaller)!.print);
  assert.equal(change.changedShare, undefined);
  assert.ok(change.hashDistance! <= 16, `the same page at another size hashes alike: ${change.hashDistance}`);
});

test('the plugin entry hands sendScreenshots to capture, and a config reload turns it off again', { skip, timeout: 120_000 }, async () => {
  const stateRoot = tempDir('clawrl-screen-entry-');
  const config = { daemonUrl: 'ws://127.0.0.1:9/ws', token: 't', optInByDefault: true, sendScreenshots: true, screenshotMaxSide: 200 };
  const png = await page.screenshot({ type: 'png' });
  const fire = (hooks: Map<string, (event: unknown, ctx: unknown) => unknown>, toolCallId: string) =>
    hooks.get('after_tool_call')!({ toolName: 'browser', toolCallId, params: { action: 'screenshot' }, result: { content: [{ type: 'image', data: png.toString('base64'), mimeType: 'image/png' }] } }, ctx);
  // The daemon is unreachable: the events wait in the spool, read here as they are written.
  const spooled = (count: number) => async () => {
    const spool = new Spool(join(stateRoot, 'clawrl'), { maxEvents: 1000, maxBytes: 1 << 30, logger: { warn() {} } });
    const events = spool.durableAfter(0, 1 << 30, 1000).filter((e): e is ToolResultEvent => e.kind === 'tool.result');
    await spool.close();
    return events.length === count ? events : undefined;
  };
  const first = fakeApi(config, stateRoot);
  entry.register(first.api);
  fire(first.hooks, 'e1');
  const [withCopy] = await until(spooled(1), 'the first tool result in the spool', 20_000);
  // A reload with the setting off: OpenClaw registers the plugin again with the new config.
  const second = fakeApi({ ...config, sendScreenshots: false }, stateRoot);
  entry.register(second.api);
  fire(second.hooks, 'e2');
  const [, without] = await until(spooled(2), 'the second tool result in the spool', 20_000);
  assert.equal(withCopy!.screen?.screenshot?.mimeType, 'image/jpeg');
  assert.ok(Math.max(withCopy!.screen!.screenshot!.width, withCopy!.screen!.screenshot!.height) <= 200);
  assert.equal(without!.screen?.screenshot, undefined);
  assert.equal(without!.screen?.changedShare, 0, 'still measured: the same page as before');
});
