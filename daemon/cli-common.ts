// Helpers shared by the CLI's commands (daemon/cli.ts and the command modules beside it).
import { InvalidArgumentError } from 'commander';
import { Store } from './store.ts';
import { isProcessAlive, readRuntimeInfo, readToken, resolveDataDir } from './config.ts';

let dataDirFlag: string | undefined;

/** Set from the global --data-dir flag before a command runs. */
export function setDataDirFlag(flag: string | undefined): void {
  dataDirFlag = flag;
}

export function dataDir(): string {
  return resolveDataDir(dataDirFlag);
}

/**
 * A commander argParser for a numeric flag: anything but a number in range is refused with
 * commander's own error, e.g. "error: option '--max-connections <n>' argument 'abc' is invalid.
 * Expected an integer of at least 1." (`Number.parseInt` would read "abc" as NaN, and every
 * comparison with NaN is false, so a limit quietly turned off.)
 */
export function numberArg(range: { integer?: boolean; min: number; max?: number; minExclusive?: boolean }): (value: string) => number {
  const kind = range.integer ? 'an integer' : 'a number';
  const expected =
    range.max !== undefined
      ? `Expected ${kind} from ${range.min} to ${range.max}.`
      : `Expected ${kind} ${range.minExclusive ? 'above' : 'of at least'} ${range.min}.`;
  return (value) => {
    const n = Number(value);
    const ok =
      value.trim() !== '' &&
      Number.isFinite(n) &&
      (!range.integer || Number.isSafeInteger(n)) &&
      (range.minExclusive ? n > range.min : n >= range.min) &&
      (range.max === undefined || n <= range.max);
    if (!ok) throw new InvalidArgumentError(expected);
    return n;
  };
}

export function fail(message: string): never {
  process.stderr.write(`clawrl-daemon: ${message}\n`);
  process.exit(1);
}

/** Opens the store for a CLI command; LMDB lets it share the files with a running daemon. */
export async function withStore<T>(fn: (store: Store) => Promise<T> | T): Promise<T> {
  const store = await Store.open(dataDir());
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** The running daemon's base URL, if one runs on this data dir. */
export function runningDaemonUrl(): string | undefined {
  const info = readRuntimeInfo(dataDir());
  if (!info || !isProcessAlive(info.pid)) return undefined;
  return `http://${info.host.includes(':') ? `[${info.host}]` : info.host}:${info.port}`;
}

/** Calls the running daemon of this data dir; undefined if none answers. */
export async function callDaemon(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown } | undefined> {
  const url = runningDaemonUrl();
  const token = readToken(dataDir());
  if (!url || !token) return undefined;
  try {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await res.json() };
  } catch {
    return undefined;
  }
}

/** Like callDaemon, but a command that needs the daemon fails with a clear message without it. */
export async function requireDaemon(method: string, path: string, body?: unknown): Promise<unknown> {
  const reply = await callDaemon(method, path, body);
  if (!reply) fail(`no daemon is running on ${dataDir()}; start it with \`clawrl-daemon start\``);
  if (reply.status >= 400) fail((reply.body as { error?: { message?: string } }).error?.message ?? `daemon answered ${reply.status}`);
  return reply.body;
}

