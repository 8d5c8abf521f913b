// The cost of measuring a screen change, for 1920x1080 screenshots taken by Debian's Chromium
// (through playwright-core) of a busy page: what the after_tool_call hook itself spends (base64 to
// bytes, hand-off to the worker), and what the worker spends before the event is sent: decode
// (pngjs / jpeg-js), fingerprint (luminance grid + dHash) and, when screenshots are sent, the
// 512-px JPEG copy. Prints a Markdown table (median and p95 of 30 runs each, after 3 warm-up runs).
// Run: node --import tsx bench/screen.ts
import { performance } from 'node:perf_hooks';
import { chromium } from 'playwright-core';
import { ScreenTracker, decodeImage, fingerprint, loadCodecs, thumbnail } from '../plugin/screen.ts';

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

const codecs = await loadCodecs();
const rows: string[] = [];
for (const [format, bytes] of Object.entries(shots)) {
  const pixels = decodeImage(codecs, bytes)!;
  const base64 = bytes.toString('base64');
  const off = new ScreenTracker(undefined, console.warn);
  const on = new ScreenTracker(COPY, console.warn);
  let n = 0;
  const cells = [
    ['hook: base64 to bytes + hand-off to the worker', await time(() => off.measure('s', 'browser', `c${n++}`, Buffer.from(base64, 'base64')))],
    ['worker: decode', await time(() => decodeImage(codecs, bytes))],
    ['worker: fingerprint', await time(() => fingerprint(pixels))],
    ['worker: 512-px JPEG copy (sendScreenshots)', await time(() => thumbnail(codecs, pixels, COPY.maxSide, COPY.maxBytes))],
    ['until the event is sent, screenshots off', await time(() => off.measure('s', 'browser', `c${n++}`, Buffer.from(base64, 'base64')), true)],
    ['until the event is sent, screenshots on', await time(() => on.measure('s', 'browser', `c${n++}`, Buffer.from(base64, 'base64')), true)],
  ] as const;
  await Promise.all([off.close(), on.close()]);
  for (const [step, t] of cells) rows.push(`| ${format} (${Math.round(bytes.length / 1024)} KB) | ${step} | ${t.median.toFixed(1)} | ${t.p95.toFixed(1)} |`);
}
console.log(`Node ${process.version}, 1920x1080 Chromium screenshots, ${RUNS} runs\n`);
console.log('| screenshot | step | median ms | p95 ms |\n|---|---|---|---|');
console.log(rows.join('\n'));
