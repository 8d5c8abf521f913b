// Shared by the tests: a real daemon in a child process, and a minimal protocol client.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, decode, encode, type ClientMessage, type Event, type ServerMessage } from '../protocol/index.ts';

export const repoRoot = new URL('..', import.meta.url).pathname;
export const cliPath = join(repoRoot, 'daemon', 'bin.mjs');

export function tempDir(prefix = 'clawrl-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The Python the torch worker's tests run: Debian's, where CI's python3-torch installs, unless
 *  CLAWRL_PYTHON names another (e.g. a venv with a newer torch, as the GPU machines have). */
export const TORCH_PYTHON = process.env.CLAWRL_PYTHON ?? '/usr/bin/python3';

/** A skip reason for tests of the torch worker when TORCH_PYTHON has no torch, else false. */
export function torchMissing(): string | false {
  return spawnSync(TORCH_PYTHON, ['-c', 'import torch']).status === 0
    ? false
    : `${TORCH_PYTHON} cannot import torch (apt-get install -y --no-install-recommends python3-torch)`;
}

/** Element-wise equal within `tol`, and of the same length. */
export const closeTo = (a: number[], b: number[], tol: number) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) <= tol);

export interface DaemonProcess {
  child: ChildProcess;
  url: string;
  wsUrl: string;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Starts `clawrl-daemon start` as a real child process and waits for its listening line. Node
 * options for the daemon alone come from CLAWRL_DAEMON_NODE_ARGS (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir /tmp/prof` to profile a bench's daemon (NODE_OPTIONS refuses those).
 */
export async function spawnDaemon(dataDir: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<DaemonProcess> {
  const nodeArgs = process.env.CLAWRL_DAEMON_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, cliPath, '--data-dir', dataDir, 'start', '--port', '0', '--log-level', 'warn', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`daemon did not start in 30 s; stderr: ${stderr}`)), 30_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /clawrl daemon on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`daemon exited with ${code}; stderr: ${stderr}`)));
  });
  return {
    child,
    url,
    wsUrl: url.replace(/^http/, 'ws') + '/ws',
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await once(child, 'exit');
    },
  };
}

/** Runs the CLI to completion and returns its output. */
export async function runCli(dataDir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [cliPath, '--data-dir', dataDir, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stdout, stderr };
}

/** A bare protocol client: what the plugin's link does, without spool or reconnects. */
export class TestClient {
  readonly received: ServerMessage[] = [];
  private readonly waiters: { match: (m: ServerMessage) => boolean; resolve: (m: ServerMessage) => void }[] = [];

  private constructor(readonly socket: WebSocket) {
    // A message goes to the first waiter it matches, else it waits in `received`.
    socket.on('message', (data: Buffer) => {
      const message = decode(data) as ServerMessage;
      const i = this.waiters.findIndex((w) => w.match(message));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(message);
      else this.received.push(message);
    });
  }

  static async connect(wsUrl: string, token: string): Promise<TestClient> {
    const socket = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${token}` } });
    await once(socket, 'open');
    return new TestClient(socket);
  }

  send(message: ClientMessage): void {
    this.socket.send(encode(message));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.socket.send(bytes);
  }

  next(match: (m: ServerMessage) => boolean = () => true, timeoutMs = 10_000): Promise<ServerMessage> {
    const seen = this.received.find(match);
    if (seen) {
      this.received.splice(this.received.indexOf(seen), 1);
      return Promise.resolve(seen);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (m: ServerMessage) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error('timed out waiting for a server message'));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  async hello(clientId: string): Promise<Extract<ServerMessage, { type: 'welcome' }>> {
    this.send({ type: 'hello', protocol: PROTOCOL_VERSION, clientId, clientVersion: 'test' });
    const m = await this.next((m) => m.type === 'welcome' || m.type === 'error');
    if (m.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(m)}`);
    return m;
  }

  /** Sends events and waits for the ack that covers the last of them. */
  async sendEvents(events: Event[]): Promise<number> {
    this.send({ type: 'events', events });
    const last = events.at(-1)!.seq;
    const m = await this.next((m) => (m.type === 'ack' && m.seq >= last) || m.type === 'error');
    if (m.type !== 'ack') throw new Error(`expected ack, got ${JSON.stringify(m)}`);
    return m.seq;
  }

  close(): void {
    this.socket.close();
  }
}

let atCounter = 1_700_000_000_000;
export function userMessage(seq: number, sessionKey: string, content = `message ${seq}`): Event {
  return { kind: 'user.message', seq, at: atCounter++, sessionKey, content };
}
export function optIn(seq: number, sessionKey: string): Event {
  return { kind: 'session.optin', seq, at: atCounter++, sessionKey };
}

/** Polls `fn` until it gives something other than undefined or false. */
export async function until<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, what: string, ms = 20_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 25))) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
}
