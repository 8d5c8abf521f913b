// What an action did to the screen, measured without the pixels leaving the plugin.
//
// A screenshot (PNG or JPEG, decoded in pure JS: pngjs, jpeg-js) is reduced to a fingerprint: the
// mean luminance of each cell of a grid (at most GRID_COLUMNS wide, cells near-square) and a 64-bit
// difference hash (dHash) of it. Compared with the previous screenshot of the same session and
// tool, that gives the share of cells that changed and the hashes' Hamming distance. Two decodes
// of the same bytes give the same fingerprint, so an unchanged page reads 0 and 0 exactly; a
// blinking caret or an animation reads as a small change, never as none.
//
// Decoding a 1920x1080 screenshot takes 50-250 ms in JS (bench/screen.ts), far over what a hook
// may take, so it runs in a worker thread: the hook hands over the bytes and returns, and the
// tool result's event is sent when the worker answers (or without `screen` after MEASURE_TIMEOUT_MS).
// The worker runs this very module (the plugin's bundle when packed): it serves when it finds
// itself in a worker started with WORKER_TAG.
import { readFileSync, statSync } from 'node:fs';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { ScreenChange } from '../protocol/index.ts';

/** Cells across the grid; rows follow the image's aspect ratio. */
const GRID_COLUMNS = 64;
/** A cell whose mean luminance (0-255) moved by more than this changed. */
const CELL_THRESHOLD = 2;
/** Screenshots larger than this are not decoded (a decoded pixel costs 4 bytes). */
const MAX_PIXELS = 40_000_000;

export interface Pixels {
  width: number;
  height: number;
  /** RGBA, 4 bytes a pixel. */
  data: Uint8Array;
}

export interface Fingerprint {
  width: number;
  height: number;
  columns: number;
  rows: number;
  /** Mean luminance per cell, row-major. */
  cells: Uint8Array;
  /** dHash of the grid: 64 bits, as two 32-bit halves. */
  hash: [number, number];
}

/** The decoders, loaded in the worker only: the plugin's main thread never needs them. */
export interface Codecs {
  PNG: typeof import('pngjs').PNG;
  jpeg: typeof import('jpeg-js');
}

export async function loadCodecs(): Promise<Codecs> {
  // CommonJS packages: their module.exports is the default export (in Node and in the bundle).
  const [png, jpeg] = await Promise.all([import('pngjs'), import('jpeg-js')]);
  return { PNG: png.default.PNG, jpeg: jpeg.default };
}

const isPng = (b: Uint8Array) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
const isJpeg = (b: Uint8Array) => b[0] === 0xff && b[1] === 0xd8;

/** Decodes by content (the stated MIME type can be wrong); undefined for other formats. */
export function decodeImage({ PNG, jpeg }: Codecs, bytes: Uint8Array): Pixels | undefined {
  if (isPng(bytes)) {
    const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return { width: png.width, height: png.height, data: png.data };
  }
  if (isJpeg(bytes)) {
    return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_PIXELS / 1e6, maxMemoryUsageInMB: 512 });
  }
  return undefined;
}

/** Width and height from a PNG's IHDR or a JPEG's SOF marker, without decoding. */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (isPng(bytes) && bytes.length >= 24) return { width: view.getUint32(16), height: view.getUint32(20) };
  if (!isJpeg(bytes)) return undefined;
  for (let i = 2; i + 9 < bytes.length; ) {
    if (bytes[i] !== 0xff) return undefined;
    const marker = bytes[i + 1]!;
    // SOF0-SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { height: view.getUint16(i + 5), width: view.getUint16(i + 7) };
    }
    i += 2 + view.getUint16(i + 2);
  }
  return undefined;
}

/** Mean luminance per cell, one pass over the pixels (integer Rec. 601 weights). */
export function fingerprint(pixels: Pixels): Fingerprint {
  const { width, height, data } = pixels;
  const columns = Math.max(1, Math.min(GRID_COLUMNS, width));
  const rows = Math.max(1, Math.min(height, Math.round((height / width) * columns)));
  const sums = new Float64Array(columns * rows);
  const counts = new Uint32Array(columns * rows);
  const colOf = new Uint16Array(width);
  for (let x = 0; x < width; x++) colOf[x] = Math.floor((x * columns) / width);
  for (let y = 0; y < height; y++) {
    const rowBase = Math.floor((y * rows) / height) * columns;
    let p = y * width * 4;
    for (let x = 0; x < width; x++, p += 4) {
      const cell = rowBase + colOf[x]!;
      sums[cell]! += 299 * data[p]! + 587 * data[p + 1]! + 114 * data[p + 2]!;
      counts[cell]!++;
    }
  }
  const cells = new Uint8Array(columns * rows);
  for (let i = 0; i < cells.length; i++) cells[i] = Math.round(sums[i]! / 1000 / Math.max(1, counts[i]!));
  return { width, height, columns, rows, cells, hash: dHash(cells, columns, rows) };
}

/** 9x8 area-averaged grid of the cells, each bit: is a cell brighter than its right neighbour. */
function dHash(cells: Uint8Array, columns: number, rows: number): [number, number] {
  const small = new Float64Array(9 * 8);
  const counts = new Uint32Array(9 * 8);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < columns; x++) {
      const i = Math.floor((y * 8) / rows) * 9 + Math.floor((x * 9) / columns);
      small[i]! += cells[y * columns + x]!;
      counts[i]!++;
    }
  }
  for (let i = 0; i < small.length; i++) small[i] = counts[i]! > 0 ? small[i]! / counts[i]! : 0;
  const hash: [number, number] = [0, 0];
  for (let y = 0; y < 8; y++) {
    for (let x = 0; x < 8; x++) {
      const bit = y * 8 + x;
      if (small[y * 9 + x]! > small[y * 9 + x + 1]!) hash[bit >> 5]! |= 1 << (bit & 31);
    }
  }
  return hash;
}

function popcount(n: number): number {
  n -= (n >>> 1) & 0x55555555;
  n = (n & 0x33333333) + ((n >>> 2) & 0x33333333);
  return (((n + (n >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** The change from `before` to `after`; `changedShare` only when both have the same size. */
export function compare(before: Fingerprint, after: Fingerprint): Pick<ScreenChange, 'changedShare' | 'hashDistance'> {
  const hashDistance = popcount((before.hash[0] ^ after.hash[0]) >>> 0) + popcount((before.hash[1] ^ after.hash[1]) >>> 0);
  if (before.width !== after.width || before.height !== after.height) return { hashDistance };
  let changed = 0;
  for (let i = 0; i < after.cells.length; i++) if (Math.abs(after.cells[i]! - before.cells[i]!) > CELL_THRESHOLD) changed++;
  return { changedShare: changed / after.cells.length, hashDistance };
}

/** Box downscale (every pixel counts once) so that the longer side is at most `maxSide`. */
export function downscale(pixels: Pixels, maxSide: number): Pixels {
  const scale = Math.min(1, maxSide / Math.max(pixels.width, pixels.height));
  const width = Math.max(1, Math.round(pixels.width * scale));
  const height = Math.max(1, Math.round(pixels.height * scale));
  if (width === pixels.width && height === pixels.height) return pixels;
  const sums = new Float64Array(width * height * 3);
  const counts = new Uint32Array(width * height);
  const colOf = new Uint32Array(pixels.width);
  for (let x = 0; x < pixels.width; x++) colOf[x] = Math.min(width - 1, Math.floor(x * scale));
  for (let y = 0; y < pixels.height; y++) {
    const rowBase = Math.min(height - 1, Math.floor(y * scale)) * width;
    let p = y * pixels.width * 4;
    for (let x = 0; x < pixels.width; x++, p += 4) {
      const i = rowBase + colOf[x]!;
      sums[i * 3]! += pixels.data[p]!;
      sums[i * 3 + 1]! += pixels.data[p + 1]!;
      sums[i * 3 + 2]! += pixels.data[p + 2]!;
      counts[i]!++;
    }
  }
  const data = new Uint8Array(width * height * 4);
  for (let i = 0; i < counts.length; i++) {
    const n = Math.max(1, counts[i]!);
    data[i * 4] = sums[i * 3]! / n;
    data[i * 4 + 1] = sums[i * 3 + 1]! / n;
    data[i * 4 + 2] = sums[i * 3 + 2]! / n;
    data[i * 4 + 3] = 255;
  }
  return { width, height, data };
}

/** A downscaled screenshot as JPEG, for a vision judge or policy; undefined if none fits `maxBytes`. */
export function thumbnail({ jpeg }: Codecs, pixels: Pixels, maxSide: number, maxBytes: number): { mimeType: 'image/jpeg'; width: number; height: number; data: string } | undefined {
  // Smaller until it fits: a busy page compresses worse than a blank one.
  for (let side = maxSide; side >= 64; side = Math.floor(side / 2)) {
    const small = downscale(pixels, side);
    const encoded = jpeg.encode({ width: small.width, height: small.height, data: small.data }, 70).data;
    if (encoded.length <= maxBytes) return { mimeType: 'image/jpeg', width: small.width, height: small.height, data: Buffer.from(encoded).toString('base64') };
  }
  return undefined;
}

/** A downscaled copy of a screenshot, base64 JPEG: sent only with the `sendScreenshots` setting. */
export type Screenshot = NonNullable<ReturnType<typeof thumbnail>>;

/** What the worker makes of one screenshot. */
export interface Analysis {
  print: Fingerprint;
  screenshot?: Screenshot;
}

/** Where a copy is asked for: its longest side and its size cap. */
export interface ScreenshotOptions {
  maxSide: number;
  maxBytes: number;
}

/** A PNG or JPEG of a size worth decoding, judged from its header alone. */
export function isMeasurable(bytes: Uint8Array): boolean {
  const size = imageSize(bytes);
  return size !== undefined && size.width > 0 && size.height > 0 && size.width * size.height <= MAX_PIXELS;
}

/** Decode, fingerprint and (if asked) a downscaled copy; undefined for bytes that are no PNG or JPEG or too large. */
export function analyse(codecs: Codecs, bytes: Uint8Array, copy?: ScreenshotOptions): Analysis | undefined {
  if (!isMeasurable(bytes)) return undefined;
  const pixels = decodeImage(codecs, bytes);
  if (!pixels) return undefined;
  const screenshot = copy && thumbnail(codecs, pixels, copy.maxSide, copy.maxBytes);
  return { print: fingerprint(pixels), ...(screenshot && { screenshot }) };
}

const WORKER_TAG = 'clawrl-screen-worker';
/** After this long the tool result goes out without `screen`. */
export const MEASURE_TIMEOUT_MS = 5_000;
/** Screenshots waiting for the worker at most; more are not measured (a burst must not pile up memory). */
const MAX_PENDING = 8;
/** Sessions x tools whose last screenshot is remembered; the oldest are forgotten beyond it. */
const MAX_REMEMBERED = 1_000;

/**
 * A screenshot as its bytes, or as the file a tool saved it to: OpenClaw 2026.9.6 takes the image
 * data out of the result its hooks see (`{type: 'image', bytes, omitted: true}`), and its browser
 * tool names the screenshot's file in `details.path`.
 */
export type Shot = Uint8Array | { path: string };

/** Screenshot files larger than this are not read. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

/** The bytes of a shot; the file is read in the worker, off the host's thread. */
function bytesOf(shot: Shot): Uint8Array | undefined {
  if (shot instanceof Uint8Array) return shot;
  return statSync(shot.path).size <= MAX_FILE_BYTES ? readFileSync(shot.path) : undefined;
}

interface Request {
  id: number;
  shot: Shot;
  copy?: ScreenshotOptions;
}
interface Reply {
  id: number;
  analysis?: Analysis;
  /** This screenshot could not be measured. */
  error?: string;
  /** No screenshot can be measured. */
  fatal?: string;
}

const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err));

if (!isMainThread && workerData === WORKER_TAG) {
  const codecs = loadCodecs().then(
    (loaded) => ({ loaded }),
    (err: unknown) => ({ failed: messageOf(err) }),
  );
  parentPort!.on('message', async (request: Request) => {
    const ready = await codecs;
    let reply: Reply;
    try {
      const bytes = 'failed' in ready ? undefined : bytesOf(request.shot);
      reply =
        'failed' in ready
          ? { id: request.id, fatal: `the decoders did not load: ${ready.failed}` }
          : { id: request.id, analysis: bytes && analyse(ready.loaded, bytes, request.copy) };
    } catch (err) {
      reply = { id: request.id, error: messageOf(err) };
    }
    parentPort!.postMessage(reply);
  });
}

/**
 * The worker's script: it imports this module. Where the module is TypeScript on a Node without
 * type stripping (Node 20 under tsx, as the tests run), tsx's loader is registered in the worker
 * first (a loader registered in the main thread does not reach workers there).
 */
function workerSource(moduleUrl: string): string {
  const load = `import(${JSON.stringify(moduleUrl)})`;
  return moduleUrl.endsWith('.ts') ? `import('tsx/esm/api').then((tsx) => tsx.register(), () => undefined).then(() => ${load})` : load;
}

/**
 * Measures each screenshot against the last one of the same session and tool, in a worker. Keeps
 * a few KB per remembered screen (the grid), never the pixels. The worker starts at the first
 * screenshot and does not keep the process alive while idle.
 */
export class ScreenTracker {
  private readonly previous = new Map<string, { print: Fingerprint; toolCallId: string }>();
  private readonly pending = new Map<number, (reply: Reply | undefined) => void>();
  private worker: Worker | undefined;
  private nextId = 0;
  /** Set when the worker could not run: screenshots are then not measured. */
  private broken = false;

  // Plain fields, not parameter properties: the worker may load this file with Node's type stripping.
  /** The sendScreenshots setting: a config reload changes it (setCopy). */
  private copy: ScreenshotOptions | undefined;
  private readonly warn: (message: string) => void;

  /** `copy`: the sendScreenshots setting (undefined: pixels stay in the plugin); `warn` logs once why measuring stopped. */
  constructor(copy: ScreenshotOptions | undefined, warn: (message: string) => void) {
    this.copy = copy;
    this.warn = warn;
  }
  /** A config reload turns the screenshot copy on or off, or changes its size. */
  setCopy(copy: ScreenshotOptions | undefined): void {
    this.copy = copy;
  }


  /**
   * The change this screenshot shows since the last one of `session` and `toolName`; undefined
   * when it is not measured (not PNG or JPEG, the worker is busy, broken or late).
   */
  async measure(session: string, toolName: string, toolCallId: string, shot: Shot): Promise<ScreenChange | undefined> {
    if (this.broken || this.pending.size >= MAX_PENDING) return undefined;
    const worker = this.startWorker();
    if (!worker) return undefined;
    const id = this.nextId++;
    // Replies come in request order, so each screenshot is compared with the one asked before it.
    const reply = new Promise<Reply | undefined>((resolve) => this.pending.set(id, resolve));
    worker.ref();
    worker.postMessage({ id, shot, copy: this.copy } satisfies Request);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), MEASURE_TIMEOUT_MS);
    });
    const answered = reply.then((r) => this.compareWithPrevious(session, toolName, toolCallId, r));
    try {
      return await Promise.race([answered, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A session ended: its screens are forgotten. */
  forget(session: string): void {
    for (const key of this.previous.keys()) if (key.startsWith(`${session}\u0000`)) this.previous.delete(key);
  }

  /** Stops the worker; pending screenshots are not measured. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.settleAll();
    await worker?.terminate();
  }

  private compareWithPrevious(session: string, toolName: string, toolCallId: string, reply: Reply | undefined): ScreenChange | undefined {
    const analysis = reply?.analysis;
    if (!analysis) return undefined;
    const key = `${session}\u0000${toolName}`;
    const before = this.previous.get(key);
    this.previous.delete(key);
    if (this.previous.size >= MAX_REMEMBERED) this.previous.delete(this.previous.keys().next().value!);
    this.previous.set(key, { print: analysis.print, toolCallId });
    return {
      width: analysis.print.width,
      height: analysis.print.height,
      ...(before && { ...compare(before.print, analysis.print), comparedTo: before.toolCallId }),
      ...(analysis.screenshot && { screenshot: analysis.screenshot }),
    };
  }

  private startWorker(): Worker | undefined {
    if (this.worker) return this.worker;
    try {
      const worker = new Worker(workerSource(import.meta.url), { eval: true, workerData: WORKER_TAG });
      worker.on('message', (reply: Reply) => {
        if (reply.fatal !== undefined) return this.stop(reply.fatal);
        this.pending.get(reply.id)?.(reply);
        this.pending.delete(reply.id);
        if (this.pending.size === 0) worker.unref();
      });
      worker.on('error', (err) => this.stop(`the screen worker failed: ${err.message}`));
      worker.on('exit', (code) => this.worker === worker && this.stop(`the screen worker exited with code ${code}`));
      worker.unref();
      this.worker = worker;
      return worker;
    } catch (err) {
      this.stop(`the screen worker could not start: ${messageOf(err)}`);
      return undefined;
    }
  }

  private stop(why: string): void {
    if (this.broken) return;
    this.broken = true;
    const worker = this.worker;
    this.worker = undefined;
    this.settleAll();
    void worker?.terminate();
    this.warn(`clawrl: ${why}; screen changes are not measured until the plugin restarts`);
  }

  private settleAll(): void {
    for (const resolve of this.pending.values()) resolve(undefined);
    this.pending.clear();
  }
}
