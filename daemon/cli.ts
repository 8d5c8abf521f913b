// `clawrl-daemon`: start/stop the daemon and look at what it stored.
import { Command, InvalidArgumentError } from 'commander';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from './server.ts';
import { Store, toExportedTurn } from './store.ts';
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  isProcessAlive,
  loadOrCreateToken,
  readRuntimeInfo,
  readToken,
  resolveDataDir,
  writeRuntimeInfo,
} from './config.ts';
import { createLogger, type Level } from './log.ts';

const program = new Command('clawrl-daemon')
  .description('clawrl training daemon: stores what an OpenClaw agent does, scores it, and trains its policy')
  .option('--data-dir <dir>', 'where the daemon keeps its data (env CLAWRL_DATA_DIR)', undefined)
  .showHelpAfterError();

const dataDir = () => resolveDataDir(program.opts<{ dataDir?: string }>().dataDir);

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('must be a port number (0-65535)');
  return port;
}

function fail(message: string): never {
  process.stderr.write(`clawrl-daemon: ${message}\n`);
  process.exit(1);
}

/** Opens the store for a CLI command; LMDB lets it share the files with a running daemon. */
async function withStore<T>(fn: (store: Store) => Promise<T> | T): Promise<T> {
  const store = await Store.open(dataDir());
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

program
  .command('start')
  .description('run the daemon in the foreground')
  .option('--host <host>', 'address to bind', DEFAULT_HOST)
  .option('--port <port>', 'port for /ws, /v1, /healthz', parsePort, DEFAULT_PORT)
  .option('--log-level <level>', 'debug, info, warn, error or silent', 'info')
  .action(async (opts: { host: string; port: number; logLevel: Level | 'silent' }) => {
    const dir = dataDir();
    const running = readRuntimeInfo(dir);
    if (running && running.pid !== process.pid && isProcessAlive(running.pid)) {
      fail(`a daemon (pid ${running.pid}) already uses ${dir}; stop it first`);
    }
    const daemon = await startDaemon({ dataDir: dir, host: opts.host, port: opts.port, log: createLogger(opts.logLevel) });
    writeRuntimeInfo(dir, { pid: process.pid, host: daemon.host, port: daemon.port, startedAt: Date.now() });
    process.stdout.write(`clawrl daemon on ${daemon.url} (plugin: ${daemon.wsUrl}; data: ${dir})\n`);
    const shutdown = async () => {
      await daemon.close();
      rmSync(join(dir, 'daemon.json'), { force: true });
      process.exit(0);
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });

program
  .command('stop')
  .description('stop the daemon that runs on this data dir')
  .action(async () => {
    const info = readRuntimeInfo(dataDir());
    if (!info || !isProcessAlive(info.pid)) {
      process.stdout.write('clawrl daemon is not running\n');
      return;
    }
    process.kill(info.pid, 'SIGTERM');
    for (let i = 0; i < 100 && isProcessAlive(info.pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (isProcessAlive(info.pid)) fail(`daemon (pid ${info.pid}) did not stop within 10 s`);
    process.stdout.write(`stopped clawrl daemon (pid ${info.pid})\n`);
  });

program
  .command('status')
  .description("show the running daemon's state")
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const dir = dataDir();
    const info = readRuntimeInfo(dir);
    const token = readToken(dir);
    let status: unknown;
    if (info && token && isProcessAlive(info.pid)) {
      try {
        const host = info.host.includes(':') ? `[${info.host}]` : info.host;
        const res = await fetch(`http://${host}:${info.port}/status`, { headers: { authorization: `Bearer ${token}` } });
        if (res.ok) status = await res.json();
      } catch {
        // reported as not running below
      }
    }
    if (opts.json) {
      process.stdout.write(JSON.stringify(status ? { running: true, ...status } : { running: false }) + '\n');
    } else if (!status) {
      process.stdout.write(`clawrl daemon is not running (data: ${dir})\n`);
    } else {
      const s = status as import('./server.ts').DaemonStatus;
      process.stdout.write(
        [
          `clawrl daemon ${s.version}, pid ${s.pid}, up ${s.uptimeS} s, on ${info!.host}:${info!.port}`,
          `plugins connected: ${s.connections}`,
          `weights: ${s.weightVersion}`,
          `sessions: ${s.sessions.optedIn} opted in of ${s.sessions.total}`,
          `events: ${s.counters.eventsStored} stored, ${s.counters.duplicates} duplicates, ${s.counters.droppedNotOptedIn} dropped (not opted in)`,
        ].join('\n') + '\n',
      );
    }
    if (!status) process.exitCode = 1;
  });

program
  .command('token')
  .description('print the access token (created on first use, file mode 0600)')
  .action(() => {
    process.stdout.write(loadOrCreateToken(dataDir()) + '\n');
  });

const sessions = program.command('sessions').description('list, show, export or delete stored sessions');

sessions
  .command('list')
  .option('--json', 'print JSON lines')
  .action((opts: { json?: boolean }) =>
    withStore((store) => {
      for (const s of store.listSessions()) {
        const turns = [...store.turnsOf(s.sessionKey)].length;
        if (opts.json) process.stdout.write(JSON.stringify({ ...s, turns }) + '\n');
        else process.stdout.write(`${s.sessionKey}\t${s.optedIn ? 'opted in' : 'opted out'}\t${s.events} events\t${turns} turns\n`);
      }
    }),
  );

sessions
  .command('show <key>')
  .description("print a session's record and its stored events as JSON")
  .action((key: string) =>
    withStore((store) => {
      const record = store.sessions.get(key);
      if (!record) fail(`no session ${JSON.stringify(key)}`);
      process.stdout.write(JSON.stringify({ ...record, events: [...store.sessionEventsOf(key)] }, null, 2) + '\n');
    }),
  );

sessions
  .command('export')
  .description('print turns, one JSON object per line')
  .option('--json', 'JSON lines (the only format)')
  .option('--session <key>', 'only this session')
  .action((opts: { session?: string }) =>
    withStore((store) => {
      for (const turn of store.turnsOf(opts.session)) process.stdout.write(JSON.stringify(toExportedTurn(turn)) + '\n');
    }),
  );

sessions
  .command('rm <key>')
  .description('delete everything stored about a session')
  .action((key: string) =>
    withStore(async (store) => {
      if (!(await store.removeSession(key))) fail(`no session ${JSON.stringify(key)}`);
      process.stdout.write(`removed session ${key}\n`);
    }),
  );

await program.parseAsync(process.argv);
