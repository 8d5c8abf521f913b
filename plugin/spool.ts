// The durable, bounded queue of events the daemon has not acknowledged yet.
//
// On disk: one append-only file of frames, each a little-endian u32 length followed by an
// `events` message holding one event, encoded by the protocol codec (so a frame read back after a
// crash is validated like one off the wire). Appends are buffered and written + fdatasync'd in
// small batches off the hook path. Only events already on disk are handed out for sending, so
// the daemon never holds an event this client could forget. An ack only moves a watermark; the
// file is rewritten (compacted) once the acknowledged prefix outweighs what is still pending.
// A small meta file keeps the highest seq handed out, so seq stays monotonic across restarts
// even when compaction leaves the spool empty.
//
// One process writes a spool folder at a time (`claimSpoolDir`): a gateway and an `openclaw agent
// --local` run on the same state dir each get their own folder, client id and seq. Events the
// daemon refuses are set aside in the folder's quarantine file instead of being resent forever.
import { appendFileSync, closeSync, existsSync, fdatasync, fsyncSync, mkdirSync, openSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, utimesSync, write, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ProtocolError, decode, encode, validateEvent, type Event } from '../protocol/index.ts';

/** An event before the spool numbers it. */
export type NewEvent = Event extends infer E ? (E extends Event ? Omit<E, 'seq'> : never) : never;

export interface SpoolLogger {
  warn(message: string): void;
}

export interface SpoolOptions {
  /** Pending events kept at most; the oldest are dropped beyond it. */
  maxEvents: number;
  /** Encoded bytes of pending events kept at most; the oldest are dropped beyond it. */
  maxBytes: number;
  logger: SpoolLogger;
  /** How long appends may wait before they are written and synced. */
  flushDelayMs?: number;
  /** Called after a batch became durable (and so may be sent). */
  onDurable?: () => void;
}

export interface SpoolStats {
  /** Events waiting for an ack. */
  pending: number;
  pendingBytes: number;
  /** Events acknowledged by the daemon since this spool was opened. */
  acked: number;
  /** Events dropped because the spool was full, since it was opened. */
  dropped: number;
  lastSeq: number;
  ackedSeq: number;
}

interface Entry {
  event: Event;
  /** The length-prefixed frame as it is (or will be) in the file. */
  frame: Buffer;
}

interface Meta {
  lastSeq: number;
  ackedSeq: number;
  /** The `at` of the event with seq ackedSeq, where this spool had it. */
  ackedAt?: number;
}

const SPOOL_FILE = 'spool.bin';
const META_FILE = 'spool.meta.json';
/** Compact only once this many dead frames sit in the file, so acks of single events stay cheap. */
const COMPACT_MIN_DEAD = 512;
/** Flush at once when this much waits to be written. */
const FLUSH_BYTES = 256 * 1024;

const writeAsync = promisify(write);
const fdatasyncAsync = promisify(fdatasync);

function frameOf(event: Event): Buffer {
  const body = encode({ type: 'events', events: [event] });
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32LE(body.length, 0);
  body.copy(frame, 4);
  return frame;
}

/**
 * Reads the frames of a spool file. Stops at the first torn or invalid frame (a crash mid-write)
 * and skips frames whose seq does not increase (a batch written twice when the process exited
 * during an asynchronous write).
 */
function readFrames(buf: Buffer): { entries: Entry[]; frames: number; validBytes: number } {
  const entries: Entry[] = [];
  let frames = 0;
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (off + 4 + len > buf.length) break;
    let event: Event | undefined;
    try {
      // Only the envelope must be readable: an event a newer protocol refuses (an older spool's)
      // is still read back, and the daemon names it for quarantine.
      const msg = decode(buf.subarray(off + 4, off + 4 + len), undefined, { events: 'seq' });
      if (msg.type === 'events' && msg.events.length === 1) event = msg.events[0];
    } catch (err) {
      // A corrupt frame ends the readable prefix, like a torn one.
      if (!(err instanceof ProtocolError)) throw err;
    }
    if (!event) break;
    if (event.seq > (entries.at(-1)?.event.seq ?? 0)) {
      entries.push({ event, frame: Buffer.from(buf.subarray(off, off + 4 + len)) });
    }
    frames++;
    off += 4 + len;
  }
  return { entries, frames, validBytes: off };
}

export class Spool {
  private readonly file: string;
  private readonly metaFile: string;
  private readonly flushDelayMs: number;
  /** Pending events in seq order. */
  private entries: Entry[] = [];
  /** Highest seq written to the file: entries up to it are durable. */
  private diskSeq: number;
  /** Frames in the file, pending or already acknowledged. */
  private fileFrames: number;
  private pendingBytes = 0;
  private lastSeq: number;
  private ackedSeq: number;
  private ackedAt: number | undefined;
  private ackedCount = 0;
  private droppedCount = 0;
  private fd: number;
  private io: Promise<void> = Promise.resolve();
  private flushTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly onExit = () => this.flushSync();

  constructor(
    readonly dir: string,
    private readonly opts: SpoolOptions,
  ) {
    // Synchronous I/O is fine here: a spool opens once, when the link starts, not in a hook.
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, SPOOL_FILE);
    this.metaFile = join(dir, META_FILE);
    this.flushDelayMs = opts.flushDelayMs ?? 20;
    const meta = this.readMeta();
    const raw = existsSync(this.file) ? readFileSync(this.file) : Buffer.alloc(0);
    const { entries, frames, validBytes } = readFrames(raw);
    this.lastSeq = Math.max(meta.lastSeq, entries.at(-1)?.event.seq ?? 0);
    this.diskSeq = this.lastSeq;
    this.ackedSeq = meta.ackedSeq;
    this.ackedAt = meta.ackedAt;
    this.entries = entries.filter((e) => e.event.seq > this.ackedSeq);
    this.pendingBytes = this.entries.reduce((n, e) => n + e.frame.length, 0);
    this.fileFrames = frames;
    this.fd = openSync(this.file, 'a');
    if (validBytes < raw.length) {
      opts.logger.warn(`clawrl spool: ignoring ${raw.length - validBytes} bytes of a torn write at the end of ${this.file}`);
      // Rewrite, or new frames would land behind the garbage and never be read back.
      this.rewriteSync();
    }
    this.enforceBounds();
    // A process that exits between a hook and the next batch write still keeps its events.
    process.on('exit', this.onExit);
  }

  /**
   * Numbers an event and queues it; cheap and synchronous so hooks can call it. Throws a
   * ProtocolError (and queues nothing) for an event the daemon would refuse: one bad event must
   * not block the rest.
   */
  append(event: NewEvent): Event {
    const numbered = validateEvent({ ...event, seq: this.lastSeq + 1 });
    const frame = frameOf(numbered);
    this.lastSeq = numbered.seq;
    this.entries.push({ event: numbered, frame });
    this.pendingBytes += frame.length;
    this.enforceBounds();
    this.scheduleFlush(frame.length >= FLUSH_BYTES ? 0 : this.flushDelayMs);
    return numbered;
  }

  /**
   * Durable pending events with seq > `afterSeq`: at most `maxCount`, and at most `maxBytes` of
   * frames unless the first alone is larger.
   */
  durableAfter(afterSeq: number, maxBytes: number, maxCount: number): Event[] {
    const out: Event[] = [];
    let bytes = 0;
    for (let i = this.indexAfter(afterSeq); i < this.entries.length && out.length < maxCount; i++) {
      const e = this.entries[i]!;
      if (e.event.seq > this.diskSeq || (out.length > 0 && bytes + e.frame.length > maxBytes)) break;
      bytes += e.frame.length;
      out.push(e.event);
    }
    return out;
  }

  /** A pending event, by seq. */
  get(seq: number): Event | undefined {
    const entry = this.entries[this.indexAfter(seq - 1)];
    return entry?.event.seq === seq ? entry.event : undefined;
  }

  /**
   * Whether a daemon's acked seq for this spool's client id, with the `at` of the event it acked
   * last, can be this spool's own. Not when the daemon acked a seq this spool never handed out,
   * nor an event other than the one this spool holds at that seq: a copy of this folder (a
   * restored backup, a cloned volume or image) numbered its own events under the same client id,
   * and taking its acks for ours would drop events the daemon never had. `at` undefined (an older
   * daemon, an event sent without one) and a daemon behind this spool (its store restored) cannot
   * be told apart from ours, and are.
   */
  isOwnAck(seq: number, at: number | undefined): boolean {
    if (seq > this.lastSeq) return false;
    if (at === undefined || seq < this.ackedSeq) return true;
    if (seq === this.ackedSeq) return this.ackedAt === undefined || this.ackedAt === at;
    return this.get(seq)?.at === at;
  }

  /** Everything up to `seq` is durable at the daemon. */
  ack(seq: number): void {
    if (seq <= this.ackedSeq) return;
    this.ackedSeq = seq;
    this.ackedAt = this.get(seq)?.at;
    const n = this.indexAfter(seq);
    for (let i = 0; i < n; i++) this.pendingBytes -= this.entries[i]!.frame.length;
    this.ackedCount += n;
    this.entries.splice(0, n);
    const dead = this.fileFrames - this.indexAfter(this.diskSeq);
    if ((this.entries.length === 0 && dead > 0) || (dead >= COMPACT_MIN_DEAD && dead >= this.fileFrames - dead)) {
      void this.enqueueIo(() => this.compact());
    }
  }

  /** New bounds apply at once: a smaller spool drops its oldest events now. */
  setBounds(maxEvents: number, maxBytes: number): void {
    this.opts.maxEvents = maxEvents;
    this.opts.maxBytes = maxBytes;
    this.enforceBounds();
  }

  stats(): SpoolStats {
    return {
      pending: this.entries.length,
      pendingBytes: this.pendingBytes,
      acked: this.ackedCount,
      dropped: this.droppedCount,
      lastSeq: this.lastSeq,
      ackedSeq: this.ackedSeq,
    };
  }

  /** Writes and syncs everything appended so far. */
  flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    return this.enqueueIo(() => this.writePending());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    process.off('exit', this.onExit);
    await this.io;
    closeSync(this.fd);
  }

  // --- internals ---

  /** Index of the first entry with seq > `seq` (entries are in seq order). */
  private indexAfter(seq: number): number {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid]!.event.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Drops the oldest events beyond the bounds, but for each session's last opt-in or opt-out: the
   * daemon stores a session's events only after its opt-in, so dropping that one event would lose
   * every event of the session kept here. Those stay in front (few: one a session).
   */
  private enforceBounds(): void {
    const { maxEvents, maxBytes } = this.opts;
    let count = this.entries.length;
    let bytes = this.pendingBytes;
    if (count <= maxEvents && bytes <= maxBytes) return;
    const lastOpt = new Map<string, number>();
    for (const { event } of this.entries) if (event.kind === 'session.optin' || event.kind === 'session.optout') lastOpt.set(event.sessionKey, event.seq);
    const kept: Entry[] = [];
    let dropped = 0;
    let first = 0;
    let last = 0;
    let i = 0;
    // The newest event always stays, even alone over the byte bound.
    for (; i < this.entries.length - 1 && (count > maxEvents || bytes > maxBytes); i++) {
      const { event, frame } = this.entries[i]!;
      if (lastOpt.get(event.sessionKey) === event.seq) {
        kept.push(this.entries[i]!);
        continue;
      }
      count--;
      bytes -= frame.length;
      dropped++;
      first ||= event.seq;
      last = event.seq;
    }
    if (dropped === 0) return;
    this.entries = [...kept, ...this.entries.slice(i)];
    this.pendingBytes = bytes;
    this.droppedCount += dropped;
    this.opts.logger.warn(
      `clawrl spool full (${maxEvents} events / ${maxBytes} bytes): dropped the oldest ${dropped} event(s), seq ${first}..${last}${kept.length > 0 ? ` (kept ${kept.length} opt-in or opt-out event(s) among them)` : ''}; ${this.droppedCount} dropped since start`,
    );
  }

  private scheduleFlush(delayMs: number): void {
    if (this.closed || (this.flushTimer && delayMs > 0)) return;
    clearTimeout(this.flushTimer);
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.enqueueIo(() => this.writePending());
    }, delayMs);
    // A pending write must not keep a finishing process alive; the exit handler writes the rest.
    this.flushTimer.unref();
  }

  private enqueueIo(task: () => Promise<void>): Promise<void> {
    const run = this.io.then(task).catch((err: unknown) => {
      this.opts.logger.warn(`clawrl spool: write failed: ${(err as Error).message}`);
    });
    this.io = run;
    return run;
  }

  private unwritten(): Entry[] {
    return this.entries.slice(this.indexAfter(this.diskSeq));
  }

  private async writePending(): Promise<void> {
    const batch = this.unwritten();
    if (this.closed || batch.length === 0) return;
    const fd = this.fd;
    await writeAsync(fd, Buffer.concat(batch.map((e) => e.frame)));
    await fdatasyncAsync(fd);
    this.diskSeq = Math.max(this.diskSeq, batch.at(-1)!.event.seq);
    this.fileFrames += batch.length;
    this.opts.onDurable?.();
  }

  /** Rewrites the file with only the pending events that are already durable. */
  private async compact(): Promise<void> {
    if (this.closed) return;
    await this.writeMeta();
    const live = this.entries.slice(0, this.indexAfter(this.diskSeq));
    const tmp = `${this.file}.tmp`;
    await writeFile(tmp, Buffer.concat(live.map((e) => e.frame)), { flush: true });
    // Swap synchronously, so the exit handler never writes to the replaced file.
    renameSync(tmp, this.file);
    closeSync(this.fd);
    this.fd = openSync(this.file, 'a');
    this.fileFrames = live.length;
  }

  /** The exit-time counterpart of writePending: synchronous, whatever is not written yet. */
  private flushSync(): void {
    const batch = this.unwritten();
    if (this.closed || batch.length === 0) return;
    try {
      writeSync(this.fd, Buffer.concat(batch.map((e) => e.frame)));
      fsyncSync(this.fd);
    } catch (err) {
      this.opts.logger.warn(`clawrl spool: final write failed: ${(err as Error).message}`);
    }
  }

  private rewriteSync(): void {
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w');
    writeSync(fd, Buffer.concat(this.entries.map((e) => e.frame)));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.file);
    closeSync(this.fd);
    this.fd = openSync(this.file, 'a');
    this.fileFrames = this.entries.length;
  }

  private readMeta(): Meta {
    try {
      const m = JSON.parse(readFileSync(this.metaFile, 'utf8')) as Partial<Meta>;
      return { lastSeq: Number(m.lastSeq) || 0, ackedSeq: Number(m.ackedSeq) || 0, ...(typeof m.ackedAt === 'number' && { ackedAt: m.ackedAt }) };
    } catch {
      return { lastSeq: 0, ackedSeq: 0 };
    }
  }

  private async writeMeta(): Promise<void> {
    const tmp = `${this.metaFile}.tmp`;
    await writeFile(tmp, JSON.stringify({ lastSeq: this.lastSeq, ackedSeq: this.ackedSeq, ackedAt: this.ackedAt } satisfies Meta), { flush: true });
    renameSync(tmp, this.metaFile);
  }
}

// --- one writer per spool folder ---

const LOCK_FILE = 'spool.lock';
/** Folders tried before giving up: more OpenClaw processes than this on one state dir at once is not a real setup. */
const MAX_SPOOL_DIRS = 64;
/** Locks this process holds, shared by every copy of this module (OpenClaw may load the plugin twice). */
const heldLocks: Set<string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('clawrl.spoolLocks')] ??= new Set()) as Set<string>;
/** How often a holder touches its lock file, which tells processes that cannot see its pid that it lives. */
export const LOCK_HEARTBEAT_MS = 10_000;
/** A lock of a process this one cannot see (another container on a shared volume) is stale once untouched this long. */
export const LOCK_STALE_MS = 6 * LOCK_HEARTBEAT_MS;

/**
 * Who holds a lock: a pid means something only in its PID namespace on its host (containers
 * sharing a state volume each have a pid 1). Linux names the namespace in /proc/self/ns/pid.
 */
interface LockHolder {
  pid: number;
  host: string;
  pidNamespace: string;
}

function thisHolder(): LockHolder {
  let pidNamespace = '';
  try {
    pidNamespace = readlinkSync('/proc/self/ns/pid');
  } catch {
    // Not Linux: no PID namespaces to tell apart.
  }
  return { pid: process.pid, host: hostname(), pidNamespace };
}

/** The lock's holder, or undefined when it cannot be read; a bare pid is a lock of an older clawrl. */
function readHolder(file: string): LockHolder | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined; // removed between our open and read
  }
  if (/^\d+$/.test(text.trim())) return { ...thisHolder(), pid: Number(text) };
  try {
    const holder = JSON.parse(text) as Partial<LockHolder>;
    if (Number.isInteger(holder.pid) && typeof holder.host === 'string' && typeof holder.pidNamespace === 'string') return holder as LockHolder;
  } catch {
    // Torn: written by a process that died mid-write, stale below once old enough.
  }
  return undefined;
}

/** Whether a lock file is left by a process that is gone: by its pid where this process can see it, else by its heartbeat. */
function isStale(file: string): boolean {
  const holder = readHolder(file);
  const me = thisHolder();
  if (holder !== undefined && holder.host === me.host && holder.pidNamespace === me.pidNamespace) return !isAlive(holder.pid);
  try {
    return Date.now() - statSync(file).mtimeMs > LOCK_STALE_MS;
  } catch {
    return true; // gone: the next open decides
  }
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return false; // our own pid in a lock we do not hold: left by an earlier process that had it
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock file for this process, or returns false when a live process holds it. */
function tryLock(file: string): boolean {
  if (heldLocks.has(file)) return false;
  for (let tries = 0; tries < 2; tries++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, JSON.stringify(thisHolder()));
      closeSync(fd);
      heldLocks.add(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (!isStale(file)) return false;
    try {
      unlinkSync(file); // stale: its process is gone
    } catch {
      // Another process took it over first; the next open decides.
    }
  }
  return false;
}

export interface SpoolDir {
  /** The folder: the state dir itself for the first writer, `spool-N/` inside it for others. */
  dir: string;
  release(): void;
}

/**
 * The first spool folder of `stateDir` no live process writes, locked for this one until
 * `release` or exit. A folder a process left behind (killed, or a one-shot run that ended with
 * events unsent) is taken by the next process that needs one, which sends what it holds.
 */
export function claimSpoolDir(stateDir: string): SpoolDir {
  for (let n = 0; n < MAX_SPOOL_DIRS; n++) {
    const dir = n === 0 ? stateDir : join(stateDir, `spool-${n}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, LOCK_FILE);
    if (!tryLock(file)) continue;
    const heartbeat = setInterval(() => {
      try {
        const now = new Date();
        utimesSync(file, now, now);
      } catch {
        // Removed by hand: the next claim of this folder makes a new one.
      }
    }, LOCK_HEARTBEAT_MS);
    heartbeat.unref();
    const release = () => {
      if (!heldLocks.delete(file)) return;
      clearInterval(heartbeat);
      process.off('exit', release);
      try {
        unlinkSync(file);
      } catch {
        // Already gone: nothing to release.
      }
    };
    process.on('exit', release);
    return { dir, release };
  }
  throw new Error(`clawrl: ${MAX_SPOOL_DIRS} processes already write spools under ${stateDir}`);
}

// --- events the daemon refused ---

const QUARANTINE_FILE = 'quarantine.jsonl';
/** The quarantine file stops growing here; later refusals are still counted and logged. */
const MAX_QUARANTINE_BYTES = 64 * 1024 * 1024;

export interface QuarantineStats {
  /** Events set aside in this folder, ever (the file's lines). */
  quarantined: number;
  quarantineFile: string;
  lastQuarantineReason?: string;
}

/**
 * Events that will never be stored (the daemon or the protocol refused them), kept on disk as
 * JSON lines `{at, seq, reason, event}` for a person to read, and never resent.
 */
export class Quarantine {
  readonly file: string;
  private count: number;
  private lastReason: string | undefined;

  constructor(dir: string) {
    this.file = join(dir, QUARANTINE_FILE);
    this.count = existsSync(this.file) ? readFileSync(this.file, 'utf8').split('\n').filter(Boolean).length : 0;
  }

  add(event: unknown, reason: string): void {
    this.count++;
    this.lastReason = reason;
    let line: string;
    try {
      line = JSON.stringify({ at: Date.now(), seq: (event as { seq?: number }).seq, reason, event });
    } catch {
      line = JSON.stringify({ at: Date.now(), seq: (event as { seq?: number }).seq, reason, event: String(event) });
    }
    const size = existsSync(this.file) ? statSync(this.file).size : 0;
    if (size + line.length < MAX_QUARANTINE_BYTES) appendFileSync(this.file, `${line}\n`, { mode: 0o600 });
  }

  stats(): QuarantineStats {
    return { quarantined: this.count, quarantineFile: this.file, ...(this.lastReason !== undefined && { lastQuarantineReason: this.lastReason }) };
  }
}
