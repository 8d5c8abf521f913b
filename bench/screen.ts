// The cost of measuring a screen change, for 1920x1080 screenshots taken by Debian's Chromium
// (through playwright-core) of a busy page: how long the plugin's real after_tool_call hook takes
// to return, what the screen worker spends (decode with pngjs / jpeg-js, fingerprint: luminance grid
// + dHash, and with sendScreenshots the 512-px JPEG copy), and how long until the tool result's
// event is sent. Prints a Markdown table (median and p95 of 30 runs each, after 3 warm-up runs).
// Run: node --import tsx bench/screen.ts
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Capture } from '../plugin/capture.ts';
import { OptIns } from '../plugin/optin.ts';
import { decodeImage, fingerprint, loadCodecs, thumbnail } from '../plugin/screen.ts';

const COPY = { maxSide: 512, maxBytes: 64 * 1024 };

const RUNS = 30;
const WARMUP = 3;

// Text, tables and colour, like an app or a documentation page: worse for PNG than a blank page.
const page = `<!doctype html><body style="margin:0;font:14px sans-serif">${Array.from(
  { length: 60 },
  (_, i) => `<div style="display:flex;gap:8px;padding:4px;background:hsl(${(i * 37) % 360},60%,${85 - (i % 5) * 5}%)">${Array.from({ length: 12 }, (_, j) => `<span>row ${i} cell ${j} ${'lorem ipsum '.repeat((i + j) % 3 + 1)}</span>`).join('')}</div>`,
).join('')}</body>`;

/** Times `fn` until it returns, or with `settled` until the promise it returns settles. */
async function time(fn: () => unknown, settled = false): Promise<{ median: number; p95: number }> {
  for (let i = 0; i < WARMUP; i++) await fn();
  const ms: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    const result = fn();
    if (settled) await result;
    ms.push(performance.now() - start);
    await result;
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(RUNS / 2)]!, p95: ms[Math.ceil(RUNS * 0.95) - 1]! };
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium' });
const tab = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
await tab.setContent(page);
const shots = {
  PNG: await tab.screenshot({ type: 'png' }),
  'JPEG (q 80)': await tab.screenshot({ type: 'jpeg', quality: 80 }),
};
await browser.close();

/**
 * The plugin's real after_tool_call handler: `fire` returns when the hook returns; its promise
 * settles when the tool result's event reaches the sink (after the worker measured the screenshot).
 */
function hook(screenshots?: typeof COPY) {
  let arrived: (() => void) | undefined;
  const capture = new Capture({ enqueue: () => arrived?.() }, new OptIns(true), console, screenshots);
  let handler: ((event: unknown, ctx: unknown) => void) | undefined;
  capture.registerHooks((name, fn) => void (name === 'after_tool_call' && (handler = fn as typeof handler)));
  let n = 0;
  const fire = (result: unknown) => {
    const sent = new Promise<void>((resolve) => (arrived = resolve));
    handler!({ toolName: 'browser', toolCallId: `c${n++}`, params: { action: 'screenshot' }, result }, { sessionKey: 'k', sessionId: 's' });
    return sent;
  };
  return { fire, close: () => capture.screens.close() };
}

const codecs = await loadCodecs();
const dir = mkdtempSync(join(tmpdir(), 'clawrl-bench-screen-'));
const rows: string[] = [];
for (const [format, bytes] of Object.entries(shots)) {
  const pixels = decodeImage(codecs, bytes)!;
  const mimeType = format === 'PNG' ? 'image/png' : 'image/jpeg';
  const path = join(dir, format === 'PNG' ? 'shot.png' : 'shot.jpg');
  writeFileSync(path, bytes);
  // As OpenClaw 2026.9.6 hands it to hooks (data taken out, the file in details.path), and with the data in the result.
  const fromFile = { content: [{ type: 'image', mimeType, bytes: bytes.length, omitted: true }], details: { path } };
  const withData = { content: [{ type: 'image', mimeType, data: bytes.toString('base64') }] };
  const off = hook();
  const on = hook(COPY);
  const cells = [
    ['hook returns (OpenClaw: file in details.path)', await time(() => off.fire(fromFile))],
    ['hook returns (image data in the result)', await time(() => off.fire(withData))],
    ['worker: decode', await time(() => decodeImage(codecs, bytes))],
    ['worker: fingerprint', await time(() => fingerprint(pixels))],
    ['worker: 512-px JPEG copy (sendScreenshots)', await time(() => thumbnail(codecs, pixels, COPY.maxSide, COPY.maxBytes))],
    ['event sent, screenshots off (OpenClaw)', await time(() => off.fire(fromFile), true)],
    ['event sent, screenshots on (OpenClaw)', await time(() => on.fire(fromFile), true)],
  ] as const;
  await Promise.all([off.close(), on.close()]);
  for (const [step, t] of cells) rows.push(`| ${format} (${Math.round(bytes.length / 1024)} KB) | ${step} | ${t.median.toFixed(1)} | ${t.p95.toFixed(1)} |`);
}
rmSync(dir, { recursive: true, force: true });
console.log(`Node ${process.version}, 1920x1080 Chromium screenshots, ${RUNS} runs\n`);
console.log('| screenshot | step | median ms | p95 ms |\n|---|---|---|---|');
console.log(rows.join('\n'));
