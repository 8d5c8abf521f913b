// Structured logs through pino: one JSON line per record on stderr, or pino-pretty's readable
// lines on a TTY. Callers keep the small (msg, fields) interface below, so no module depends on
// pino's argument order.
//
// A log line that cannot be written (stderr on a full disk, a closed pipe, a closed terminal) is
// dropped and counted, never thrown: the daemon must outlive its log. Files and devices are
// written with a fresh write per line, so logging resumes once the disk has room again.
import { fstatSync, writeSync } from 'node:fs';
import { pino } from 'pino';
import pretty from 'pino-pretty';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Writes to the log output and to stdout that failed since the process started. */
export interface OutputFailures {
  count: number;
  /** The error code of the latest, e.g. ENOSPC or EPIPE. */
  lastCode: string | null;
}

const failures: OutputFailures = { count: 0, lastCode: null };

export function outputFailures(): Readonly<OutputFailures> {
  return failures;
}

/** Errors already counted by a write's callback, which the stream then also emits as 'error'. */
const counted = new WeakSet<object>();

function failed(err: unknown): void {
  if (typeof err === 'object' && err !== null) {
    if (counted.has(err)) return;
    counted.add(err);
  }
  failures.count++;
  failures.lastCode = (err as NodeJS.ErrnoException | null)?.code ?? 'unknown';
}

const guarded = new WeakSet<NodeJS.WritableStream>();

/**
 * Makes a stream's write errors counted instead of fatal: without an 'error' listener, a failed
 * write to process.stdout or process.stderr (EPIPE, ENOSPC, EIO) is an uncaught exception.
 */
export function guardOutput(stream: NodeJS.WritableStream): void {
  // A bare {write} sink (tests collect lines so) emits nothing to guard against.
  if (guarded.has(stream) || typeof stream.on !== 'function') return;
  guarded.add(stream);
  stream.on('error', failed);
}

/** Whether `fd` is a file or a device (as /dev/full), which Node writes synchronously anyway. */
function isFileLike(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    return stat.isFile() || stat.isCharacterDevice();
  } catch {
    return false;
  }
}

/** A pino destination that never throws: see the header. */
function safeDestination(out: NodeJS.WritableStream, format: (line: string) => string): { write(line: string): void } {
  guardOutput(out);
  const fd = (out as { fd?: unknown }).fd;
  if (typeof fd === 'number' && !(out as { isTTY?: boolean }).isTTY && isFileLike(fd)) {
    return {
      write(line) {
        try {
          // A short write is what a nearly full disk gives: write the rest until it fails.
          for (let rest = Buffer.from(format(line)); rest.length > 0; ) {
            const written = writeSync(fd, rest);
            if (written <= 0) throw Object.assign(new Error('short write'), { code: 'ENOSPC' });
            rest = rest.subarray(written);
          }
        } catch (err) {
          failed(err);
        }
      },
    };
  }
  // Pipes, sockets and terminals: Node's stream, which queues rather than blocks. After an error it
  // is destroyed (a pipe whose reader has gone stays gone), and further lines are counted as lost.
  return {
    write(line) {
      if ((out as { destroyed?: boolean }).destroyed) return failed(Object.assign(new Error('closed'), { code: 'ERR_STREAM_DESTROYED' }));
      out.write(format(line), (err) => {
        if (err) failed(err);
      });
    },
  };
}

/**
 * For lines anyone who can reach the daemon can cause as often as they like (a wrong token, a bad
 * frame): each message is logged at most once per window, with how many like it were left out
 * since the last one logged, so a flood cannot fill the log's disk nor bury other lines.
 */
export function throttled(log: Logger, windowMs = 60_000): Logger {
  const windows = new Map<string, { until: number; leftOut: number }>();
  const at =
    (level: Level) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      const now = Date.now();
      const last = windows.get(msg);
      if (last && now < last.until) {
        last.leftOut++;
        return;
      }
      windows.set(msg, { until: now + windowMs, leftOut: 0 });
      log[level](msg, last?.leftOut ? { ...fields, leftOutSinceLast: last.leftOut } : fields);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export function createLogger(level: Level | 'silent' = 'info', out: NodeJS.WritableStream = process.stderr): Logger {
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  const format = tty ? pretty.prettyFactory({ translateTime: 'SYS:standard', colorize: pretty.isColorSupported }) : (line: string) => line;
  const logger = pino(
    {
      level,
      // No pid/hostname on every line; ISO times and level names ("info", not 30) keep the lines readable by grep and jq.
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Each line is handed over at once (no buffering in pino), so the last lines before process.exit() are not lost.
    safeDestination(out, format),
  );
  const at = (lvl: Level) => (msg: string, fields: Record<string, unknown> = {}) => logger[lvl](fields, msg);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
