// One port serves everything: GET /healthz (no auth), the plugin WebSocket at /ws, the
// daemon's own /status, and the OpenAI-compatible /v1/*. Everything but /healthz needs the token.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { SessionLimitError, Store } from './store.ts';
import { Gateway, SERVER_VERSION } from './gateway.ts';
import { createLogger, type Logger } from './log.ts';
import { DEFAULT_HOST, bearerMatches, ensureDataDir, loadOrCreateToken, rotateToken, secureDataDir } from './config.ts';
import { createApi, type ServedResponse } from './api.ts';
import type { Backend } from './backends/types.ts';
import { TurnAssembler } from './turns.ts';
import { ScoringLoop, type JudgeConfig } from './scoring.ts';
import { recipes, type RecipeName, type RecipeDefaults } from '../recipes/index.ts';
import { Trainer } from './trainer.ts';
import { WeightsDir } from './weights.ts';
import { join } from 'node:path';
import { HttpError, READ, findRoute, sendError, sendJson, type Route } from './http.ts';
import { controlRoutes } from './control.ts';
import { Loop } from './loop.ts';
import { EventSamples } from './event-samples.ts';
import { HintMemory, hintRoutes, type HintMemoryOptions } from './hints.ts';
import { Metrics } from './metrics.ts';
import { VersionStatsReader } from './stats.ts';
import { createDashboard } from './dashboard.ts';
import { Guard } from './guard.ts';
import type { DaemonMode, DaemonStatus } from './types.ts';

export interface DaemonOptions {
  dataDir: string;
  host?: string;
  /** PEM certificate and key: serve https:// and wss://. Needed to bind a non-loopback address. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Allow plain HTTP on a non-loopback address (a warning is logged). */
  insecure?: boolean;
  /** Plugin WebSocket connections at once; more are refused with 503. */
  maxConnections?: number;
  /** Live store data above this refuses new events (plugins keep spooling). */
  maxStoreBytes?: number;
  /** Sessions kept at most; a plugin opting in one more is told so with an error frame. */
  maxSessions?: number;
  /** Delete events and turns older than this many days (checked hourly); unset keeps everything. */
  retentionDays?: number;
  /** 0 picks a free port. */
  port?: number;
  /** Defaults to CLAWRL_TOKEN or the data dir's token file. */
  token?: string;
  log?: Logger;
  maxFrameBytes?: number;
  maxBodyBytes?: number;
  /** Turn assembly: a response with nothing after it for this long gets "no next state". */
  idleMs?: number;
  recipe?: RecipeName;
  /** Overrides of the recipe's defaults (lr, clip, batch size, m, …). */
  recipeOptions?: Partial<RecipeDefaults>;
  /** Train a partial batch once its oldest turn has waited this long. */
  maxWaitMs?: number;
  /** Where judge votes come from; default: rules (no model). */
  judge?: JudgeConfig;
  /** The policy that serves /v1; the daemon closes it on close(). Without one, /v1 answers 503. */
  backend?: Backend;
  /** 'train' (default) or 'hints': see DaemonMode. */
  mode?: DaemonMode;
  /** Hint memory's cap and the scope of learned hints. */
  hints?: Pick<HintMemoryOptions, 'maxHints' | 'scope'>;
  /** Serve GET /metrics without the token (for a scraper on a trusted network). */
  metricsPublic?: boolean;
  /** Roll back a version that is significantly worse than its reference or collapses (default true). */
  guard?: boolean;
  /** Share of sessions a new version first serves on canary (default 0: everyone at once; see canary.ts). */
  canary?: number;
}


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
  close(): Promise<void>;
}


export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '[::1]';
}

/** The name in a Host header, without its port ("[::1]:7077" → "::1"). */
function hostName(header: string): string {
  const bracketed = /^\[([^\]]*)\]/.exec(header);
  if (bracketed) return bracketed[1]!.toLowerCase();
  return header.replace(/:\d*$/, '').toLowerCase();
}

/**
 * Whether a request's Host header names this daemon. A page in a browser can make its own domain
 * resolve to 127.0.0.1 (DNS rebinding) and then talk to a loopback daemon as a same-origin site:
 * its requests carry that domain in Host. So a daemon bound to loopback answers only loopback
 * names, one bound to an address answers that address and loopback names, and one bound to every
 * interface (0.0.0.0, ::) answers any name (its clients reach it by names it cannot know).
 */
export function hostAllowed(header: string | undefined, boundHost: string): boolean {
  if (header === undefined) return true; // not a browser: browsers always send Host
  const name = hostName(header);
  if (isLoopback(name)) return true;
  const bound = hostName(boundHost);
  if (bound === '0.0.0.0' || bound === '::' || bound === '') return true;
  return name === bound;
}

function refuseUpgrade(socket: Duplex, status: string, message: string, type: string): void {
  const body = JSON.stringify({ error: { message, type } });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  ensureDataDir(opts.dataDir);
  const log = opts.log ?? createLogger('info');
  let token = opts.token ?? loadOrCreateToken(opts.dataDir);
  const host = opts.host ?? DEFAULT_HOST;
  if (!isLoopback(host) && !opts.tls) {
    if (!opts.insecure) {
      throw new Error(`binding ${host} exposes the daemon beyond this machine: give --tls-cert and --tls-key, or --insecure to accept plain HTTP`);
    }
    log.warn('serving plain HTTP on a non-loopback address: tokens and conversations cross the network unencrypted', { host });
  }
  const store = await Store.open(opts.dataDir, { maxBytes: opts.maxStoreBytes, maxSessions: opts.maxSessions });
  // The CLI also sets umask 077; a daemon started from code gets its files made private here.
  for (const problem of secureDataDir(opts.dataDir)) log.warn('could not make a file in the data dir private', { problem });
  const startedAt = Date.now();
  const backend = opts.backend;
  const weightVersion = () => backend?.currentVersion() ?? 'base';
  const stats = new VersionStatsReader(store);
  const metrics = new Metrics({ store, status: () => status(), stats, backend });
  const recipe = recipes[opts.recipe ?? 'binary-rl'];
  const mode = opts.mode ?? 'train';
  if (mode === 'hints' && backend) throw new Error('hints mode serves no policy: start it without a backend');
  const hints = new HintMemory({ store, log, ...opts.hints });
  const scoring = new ScoringLoop({
    store,
    log,
    recipe,
    recipeOptions: opts.recipeOptions,
    backend,
    judge: opts.judge ?? { kind: 'rules' },
    // Hints in every mode; in hints mode nothing trains, so a score would be a wasted judge call.
    ask: { score: mode === 'train' && recipe.needsScore, hint: true },
    onScored: (turn, score) => {
      hints.onScored(turn, score);
      metrics.scored(score);
      // A batch may just have filled: train now rather than at the trainer's next poll.
      if (score.advantages) void trainer?.maybeTrain();
      void guard?.nudge();
    },
    metrics,
  });
  const assembler = new TurnAssembler({ store, log, idleMs: opts.idleMs, onTurn: () => void scoring.nudge() });
  // Samples for runs the daemon did not serve (hints mode), derived before each assembly.
  const eventSamples = new EventSamples(store);
  const deriving = new Loop(
    () =>
      eventSamples.deriveOnce().catch((err: Error) => {
        log.error('deriving samples from events failed', { error: err.message });
        return 0;
      }),
    1_000,
  );
  const gateway = new Gateway({
    store,
    log,
    maxFrameBytes: opts.maxFrameBytes,
    weightVersion,
    onStored: () => void deriving.run().then(() => assembler.nudge()),
    metrics,
  });
  const trainer = backend?.capabilities.train
    ? new Trainer({
        store,
        log,
        backend,
        weights: new WeightsDir(join(opts.dataDir, 'weights'), log),
        recipe,
        recipeOptions: opts.recipeOptions,
        maxWaitMs: opts.maxWaitMs,
        // The guard decides canaries: without it, every version serves everyone at once.
        canaryShare: opts.guard === false ? 0 : opts.canary,
        onServing: (record, reason) =>
          gateway.broadcast({ type: 'weights.updated', version: backend.currentVersion(), recipe: record.recipe, metrics: record.metrics, reason }),
        metrics,
      })
    : undefined;
  await trainer?.init();
  const guard = trainer && opts.guard !== false ? new Guard({ store, log, backend: backend!, trainer, health: stats.health }) : undefined;

  // Only what an opted-in session was served is kept. The plugin's header is its newest word on
  // opt-in (its event may still be on the way); without the header the stored state decides.
  const recordSample = async (served: ServedResponse) => {
    const { headers, result } = served;
    if (!headers.sessionKey) return;
    if (!(headers.optIn ?? store.isOptedIn(headers.sessionKey))) return;
    await store.recordSample({
      id: served.id,
      sessionKey: headers.sessionKey,
      sessionId: headers.sessionId,
      runId: headers.runId,
      callId: headers.callId,
      turnId: headers.turnId,
      side: headers.side,
      createdAt: Date.now(),
      model: served.model,
      weightVersion: result.weightVersion,
      requestMessages: served.request.messages,
      tools: served.request.tools,
      promptTokens: result.promptTokens,
      responseTokens: result.responseTokens,
      logprobs: result.logprobs,
      text: result.text,
      toolCalls: result.toolCalls,
      finishReason: result.finishReason,
    });
  };
  // Writes still in flight when the daemon closes are awaited before the store closes.
  const recording = new Set<Promise<void>>();
  const handleV1 = createApi({
    backend: () => backend,
    log,
    maxBodyBytes: opts.maxBodyBytes,
    canaryFor: (headers) => trainer?.canaryFor(headers.sessionKey) ?? null,
    onServed: (served) => {
      metrics.served(served.result, served.durationMs);
      // No assembly pass here: a response's next state comes with later events, which nudge it.
      const write = recordSample(served)
        .catch((err: Error) => log[err instanceof SessionLimitError ? 'warn' : 'error']('recording a sample failed', { id: served.id, error: err.message }))
        .finally(() => recording.delete(write));
      recording.add(write);
    },
  });

  const status = (): DaemonStatus => {
    return {
      version: SERVER_VERSION,
      pid: process.pid,
      uptimeS: Math.round((Date.now() - startedAt) / 1000),
      connections: gateway.connections,
      weightVersion: weightVersion(),
      sessions: { total: store.sessionCount(), optedIn: store.optedInCount() },
      counters: store.counters(),
      mode,
      recipe: recipe.name,
      scoring: scoring.status(),
      hints: hints.status(),
      training: trainer?.status() ?? null,
      guard: guard?.status() ?? null,
      health: stats.health.read().get(weightVersion()) ?? null,
    };
  };

  const dashboard = createDashboard({ token: () => token, store, status, stats });
  const routes: Route[] = [
    { path: '/healthz', auth: false, methods: READ, handle: (_req, res) => sendJson(res, 200, { ok: true, version: SERVER_VERSION }) },
    { path: '/status', methods: READ, handle: (_req, res) => sendJson(res, 200, status()) },
    { path: '/v1/', handle: metrics.timeServing(handleV1) },
    metrics.route(opts.metricsPublic === true),
    ...dashboard.routes,
    ...controlRoutes(trainer, store, stats.health, guard),
    ...hintRoutes(hints),
    {
      // A new token takes effect at once; plugins connected with the old one are dropped.
      path: '/token/rotate',
      methods: ['POST'],
      handle: (_req, res) => {
        try {
          token = rotateToken(opts.dataDir);
        } catch (err) {
          return sendError(res, 409, (err as Error).message, 'conflict');
        }
        for (const socket of gateway.wss.clients) socket.close(1008, 'token rotated');
        log.warn('access token rotated; plugins must be given the new token');
        sendJson(res, 200, { rotated: true });
      },
    },
  ];

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (!hostAllowed(req.headers.host, host)) return sendError(res, 403, `Host ${JSON.stringify(req.headers.host)} is not this daemon's (it answers ${host} and loopback names)`, 'permission_error');
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const route = findRoute(routes, path);
    if (route?.auth !== false && !bearerMatches(req.headers.authorization, token) && !dashboard.allows(req, path)) {
      return sendError(res, 401, 'missing or wrong bearer token', 'authentication_error');
    }
    if (!route) return sendError(res, 404, `no route for ${req.method} ${path}`, 'not_found');
    if (route.methods && !route.methods.includes(req.method ?? '')) return sendError(res, 405, `use ${route.methods[0]} for ${path}`, 'invalid_request_error');
    await route.handle(req, res, path);
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: Error) => {
      // Malformed input that a route did not catch is still the client's error, not ours.
      const clientError = err instanceof HttpError ? err.status : err instanceof URIError ? 400 : undefined;
      if (clientError === undefined) log.error('request failed', { url: req.url, error: err.stack });
      const message = err instanceof URIError ? `the URL is not valid percent-encoding: ${req.url}` : err.message;
      if (res.headersSent) res.destroy();
      else if (clientError !== undefined) sendError(res, clientError, message, 'invalid_request_error');
      else sendError(res, 500, 'internal error', 'internal_error');
    });
  };
  const server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, onRequest) : createServer(onRequest);
  const maxConnections = opts.maxConnections ?? 64;
  server.on('upgrade', (req, socket, head) => {
    if (!hostAllowed(req.headers.host, host)) return refuseUpgrade(socket, '403 Forbidden', `Host ${JSON.stringify(req.headers.host)} is not this daemon's`, 'permission_error');
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/ws') return refuseUpgrade(socket, '404 Not Found', `no WebSocket at ${path}; use /ws`, 'not_found');
    if (!bearerMatches(req.headers.authorization, token)) {
      log.warn('refused a WebSocket with a missing or wrong token', { remote: req.socket.remoteAddress });
      return refuseUpgrade(socket, '401 Unauthorized', 'missing or wrong bearer token', 'authentication_error');
    }
    if (gateway.wss.clients.size >= maxConnections) {
      log.warn('refused a WebSocket: connection limit reached', { limit: maxConnections });
      return refuseUpgrade(socket, '503 Service Unavailable', `too many plugin connections (limit ${maxConnections})`, 'limit_reached');
    }
    gateway.wss.handleUpgrade(req, socket, head, (ws) => gateway.wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const retention =
    opts.retentionDays === undefined
      ? undefined
      : new Loop(async () => {
          const expired = await store.expireBefore(Date.now() - opts.retentionDays! * 86_400_000);
          if (expired.events || expired.turns) log.info('retention: deleted old data', { ...expired, days: opts.retentionDays });
        }, 3_600_000);
  retention?.start();
  void retention?.run();
  deriving.start();
  assembler.start();
  scoring.start();
  trainer?.start();
  guard?.start();
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  log.info('clawrl daemon listening', { host, port, dataDir: opts.dataDir });

  return {
    url: `${opts.tls ? 'https' : 'http'}://${hostInUrl}:${port}`,
    wsUrl: `${opts.tls ? 'wss' : 'ws'}://${hostInUrl}:${port}/ws`,
    host,
    port,
    get token() {
      return token;
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
    async close() {
      // Stop taking work first, then let the loops and in-flight writes finish.
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(recording);
      await retention?.stop();
      await deriving.stop();
      await assembler.stop();
      await scoring.stop();
      await hints.flushed();
      await guard?.stop();
      await trainer?.stop();
      await backend?.close();
      await store.close();
    },
  };
}
