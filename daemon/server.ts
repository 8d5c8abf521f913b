// The daemon: its pipeline (pipeline.ts), its route table (routes.ts), and one port that serves
// both and the plugin's WebSocket at /ws. Everything but /healthz needs the token.
// startDaemon builds the pipeline, listens, then starts the stages' timers: a training step that
// a restart interrupted re-runs in the background (trainer.ts), so the port answers at once.
import { createServer, type IncomingMessage } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Store } from './store.ts';
import type { Gateway } from './gateway.ts';
import { createLogger, throttled, type Logger } from './log.ts';
import { DEFAULT_HOST, ensureDataDir, loadOrCreateToken, secureDataDir } from './config.ts';
import type { Backend } from './backends/types.ts';
import type { TurnAssembler } from './turns.ts';
import type { ScoringLoop } from './scoring.ts';
import type { Trainer } from './trainer.ts';
import type { HintMemory } from './hints.ts';
import type { Guard } from './guard.ts';
import { buildPipeline, type Pipeline } from './pipeline.ts';
import { errorMessage } from './errors.ts';
import { requestUrl } from './http.ts';
import { Access, createRouter, hostAllowed, isLoopback } from './routes.ts';
import type { DaemonOptions, DaemonStatus } from './types.ts';

export type { DaemonOptions } from './types.ts';

export interface Daemon {
  url: string;
  wsUrl: string;
  host: string;
  port: number;
  token: string;
  store: Store;
  gateway: Gateway;
  backend?: Backend;
  assembler: TurnAssembler;
  scoring: ScoringLoop;
  hints: HintMemory;
  trainer?: Trainer;
  guard?: Guard;
  status(): DaemonStatus;
  /** Resolves once the samples of every response already sent are stored (or refused). */
  samplesRecorded(): Promise<void>;
  close(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  ensureDataDir(opts.dataDir);
  const log = opts.log ?? createLogger('info');
  const access = new Access(opts.dataDir, opts.token ?? loadOrCreateToken(opts.dataDir));
  const host = opts.host ?? DEFAULT_HOST;
  if (!isLoopback(host) && !opts.tls) {
    if (!opts.insecure) {
      throw new Error(`binding ${host} exposes the daemon beyond this machine: give --tls-cert and --tls-key, or --insecure to accept plain HTTP`);
    }
    log.warn('serving plain HTTP on a non-loopback address: tokens and conversations cross the network unencrypted', { host });
  }

  const pipeline = await buildPipeline(opts, log);
  // The CLI also sets umask 077; a daemon started from code gets its files made private here.
  for (const problem of secureDataDir(opts.dataDir)) log.warn('could not make a file in the data dir private', { problem });
  const router = createRouter(pipeline, access, { host, log, metricsPublic: opts.metricsPublic === true });
  const server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, router) : createServer(router);
  const refusals = throttled(log);
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // A throw here would be uncaught and end the daemon: one request must never do that.
    try {
      acceptPlugin(pipeline, access, { host, log: refusals, maxConnections: opts.maxConnections ?? 64 }, req, socket, head);
    } catch (err) {
      log.error('a WebSocket upgrade failed', { url: req.url, error: errorMessage(err) });
      refuseUpgrade(socket, '500 Internal Server Error', 'internal error', 'internal');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  pipeline.start();

  const port = (server.address() as AddressInfo).port;
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  log.info('clawrl daemon listening', { host, port, dataDir: opts.dataDir });
  const { store, gateway, backend, status, assembler, scoring, hints, trainer, guard } = pipeline;
  return {
    url: `${opts.tls ? 'https' : 'http'}://${hostInUrl}:${port}`,
    wsUrl: `${opts.tls ? 'wss' : 'ws'}://${hostInUrl}:${port}/ws`,
    host,
    port,
    get token() {
      return access.token;
    },
    store,
    gateway,
    backend,
    status,
    assembler,
    scoring,
    hints,
    trainer,
    guard,
    samplesRecorded: () => pipeline.samplesRecorded(),
    async close() {
      // Stop taking work first, then let the stages and in-flight writes finish.
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pipeline.stop();
    },
  };
}

/** The plugin's WebSocket at /ws: the same Host and token checks as a request, and a connection limit. */
function acceptPlugin(
  pipeline: Pipeline,
  access: Access,
  /** `log` is throttled: anyone can make these refusals. */
  opts: { host: string; log: Logger; maxConnections: number },
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): void {
  const { gateway } = pipeline;
  const { log, maxConnections } = opts;
  if (!hostAllowed(req.headers.host, opts.host)) return refuseUpgrade(socket, '403 Forbidden', `Host ${JSON.stringify(req.headers.host)} is not this daemon's`, 'permission_error');
  let path: string;
  try {
    path = requestUrl(req).pathname;
  } catch (err) {
    return refuseUpgrade(socket, '400 Bad Request', errorMessage(err), 'invalid_request_error');
  }
  if (path !== '/ws') return refuseUpgrade(socket, '404 Not Found', `no WebSocket at ${path}; use /ws`, 'not_found');
  if (!access.allows(req.headers.authorization)) {
    log.warn('refused a WebSocket with a missing or wrong token', { remote: req.socket.remoteAddress });
    return refuseUpgrade(socket, '401 Unauthorized', 'missing or wrong bearer token', 'authentication_error');
  }
  if (gateway.wss.clients.size >= maxConnections) {
    log.warn('refused a WebSocket: connection limit reached', { limit: maxConnections });
    return refuseUpgrade(socket, '503 Service Unavailable', `too many plugin connections (limit ${maxConnections})`, 'limit_reached');
  }
  gateway.wss.handleUpgrade(req, socket, head, (ws) => gateway.wss.emit('connection', ws, req));
}

function refuseUpgrade(socket: Duplex, status: string, message: string, type: string): void {
  const body = JSON.stringify({ error: { message, type } });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}
