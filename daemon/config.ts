// Where the daemon keeps its things, and the access token.
import { randomBytes, createHash, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, chmodSync, renameSync, readdirSync, lstatSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { errorMessage } from './errors.ts';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 7077;

export function resolveDataDir(flag?: string): string {
  return flag ?? process.env.CLAWRL_DATA_DIR ?? join(homedir(), '.clawrl');
}

/** Creates the data dir, private (0700) even if it existed with looser modes. */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
}

/**
 * Makes everything under the data dir private to its owner: folders 0700, files 0600, whatever
 * they were (a data dir made by hand or by an older clawrl held 0644 store and weight files in
 * 0755 folders; LMDB creates its files 0644). Links are left alone, and not followed. Returns
 * what could not be changed (a file of another user), one "path: reason" each.
 */
export function secureDataDir(dataDir: string): string[] {
  const problems: string[] = [];
  const attempt = (path: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      problems.push(`${path}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    }
  };
  const folders = [dataDir];
  for (let folder = folders.pop(); folder !== undefined; folder = folders.pop()) {
    const inside = folder;
    attempt(inside, () => {
      chmodSync(inside, 0o700);
      for (const name of readdirSync(inside)) {
        const path = join(inside, name);
        attempt(path, () => {
          const stat = lstatSync(path);
          if (stat.isDirectory()) folders.push(path);
          else if (stat.isFile() && (stat.mode & 0o777) !== 0o600) chmodSync(path, 0o600);
        });
      }
    });
  }
  return problems;
}

const tokenPath = (dataDir: string) => join(dataDir, 'token');

/** The token from CLAWRL_TOKEN, else the data dir's token file, created (mode 0600) on first use. */
export function loadOrCreateToken(dataDir: string): string {
  return readToken(dataDir) ?? writeNewToken(dataDir);
}

/** Replaces the token file with a new random token; refused while CLAWRL_TOKEN pins the token. */
export function rotateToken(dataDir: string): string {
  if (process.env.CLAWRL_TOKEN) throw new Error('CLAWRL_TOKEN sets the token; change that variable instead of rotating');
  return writeNewToken(dataDir);
}

function writeNewToken(dataDir: string): string {
  ensureDataDir(dataDir);
  const token = randomBytes(32).toString('base64url');
  const tmp = `${tokenPath(dataDir)}.${process.pid}.tmp`;
  writeFileSync(tmp, token + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, tokenPath(dataDir));
  return token;
}

/** The token a client should use: CLAWRL_TOKEN, else the token file; undefined if neither exists. */
export function readToken(dataDir: string): string | undefined {
  if (process.env.CLAWRL_TOKEN) return process.env.CLAWRL_TOKEN;
  if (!existsSync(tokenPath(dataDir))) return undefined;
  return readFileSync(tokenPath(dataDir), 'utf8').trim() || undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Checks an `Authorization: Bearer <token>` header in constant time (hashing equalises lengths). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  const given = match?.[1] ?? '';
  return timingSafeEqual(digest(given), digest(token)) && given.length > 0;
}

/** Written by a running daemon so `stop` and `status` can find it. */
export interface RuntimeInfo {
  pid: number;
  host: string;
  port: number;
  startedAt: number;
}

const runtimePath = (dataDir: string) => join(dataDir, 'daemon.json');

export function writeRuntimeInfo(dataDir: string, info: RuntimeInfo): void {
  const tmp = `${runtimePath(dataDir)}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(info) + '\n', { mode: 0o600 });
  renameSync(tmp, runtimePath(dataDir));
}

export function readRuntimeInfo(dataDir: string): RuntimeInfo | undefined {
  try {
    return JSON.parse(readFileSync(runtimePath(dataDir), 'utf8')) as RuntimeInfo;
  } catch {
    return undefined;
  }
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
