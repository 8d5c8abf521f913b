// One port serves everything: GET /healthz (no auth), the plugin WebSocket at /ws, the
// daemon's own /status, and the OpenAI-compatible /v1/*. Everything but /healthz needs the token.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { Store } from './store.ts';
import { Gateway, SERVER_VERSION } from './gateway.ts';
import { createLogger, type Logger } from './log.ts';
import { DEFAULT_HOST, bearerMatches, ensureDataDir, loadOrCreateToken } from './config.ts';
import { createApi, type ServedResponse } from './api.ts';
import type { Backend } from './backends/types.ts';
import { TurnAssembler } from './turns.ts';
import { ScoringLoop, type JudgeConfig, type ScoringStatus } from './scoring.ts';
import { recipes, type RecipeName, type RecipeDefaults } from '../recipes/index.ts';
import { Trainer, type TrainerStatus } from './trainer.ts';
import { WeightsDir } from './weights.ts';
import { join } from 'node:path';

export interface DaemonOptions {
  dataDir: string;
  host?: string;
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
  trainer?: Trainer;
  status(): DaemonStatus;
  close(): Promise<void>;
}

export interface DaemonStatus {
  version: string;
  pid: number;
  uptimeS: number;
  connections: number;
  weightVersion: string;
  sessions: { total: number; optedIn: number };
  counters: ReturnType<Store['counters']>;
  recipe: RecipeName;
  scoring: ScoringStatus;
  /** Null when the backend cannot train (upstream). */
  training: TrainerStatus | null;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function refuseUpgrade(socket: Duplex, status: string, message: string): void {
  const body = JSON.stringify({ error: { message, type: 'authentication_error' } });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  ensureDataDir(opts.dataDir);
  const log = opts.log ?? createLogger('info');
  const token = opts.token ?? loadOrCreateToken(opts.dataDir);
  const host = opts.host ?? DEFAULT_HOST;
  const store = await Store.open(opts.dataDir);
  const startedAt = Date.now();
  const backend = opts.backend;
  const weightVersion = () => backend?.currentVersion() ?? 'base';
  const recipe = recipes[opts.recipe ?? 'binary-rl'];
  const scoring = new ScoringLoop({ store, log, recipe, recipeOptions: opts.recipeOptions, backend, judge: opts.judge ?? { kind: 'rules' } });
  // Created before the gateway, which reports its version; it tells plugins through the gateway.
  let gatewayRef: Gateway | undefined;
  const trainer = backend?.capabilities.train
    ? new Trainer({
        store,
        log,
        backend,
        weights: new WeightsDir(join(opts.dataDir, 'weights')),
        recipe,
        recipeOptions: opts.recipeOptions,
        maxWaitMs: opts.maxWaitMs,
        onServing: (record) =>
          gatewayRef?.broadcast({ type: 'weights.updated', version: backend.currentVersion(), recipe: record.recipe, metrics: record.metrics }),
      })
    : undefined;
  await trainer?.init();
  const assembler = new TurnAssembler({ store, log, idleMs: opts.idleMs, onTurn: () => void scoring.nudge() });
  const gateway = new Gateway({ store, log, maxFrameBytes: opts.maxFrameBytes, weightVersion, onStored: () => void assembler.nudge() });
  gatewayRef = gateway;

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
    onServed: (served) => {
      const write = recordSample(served)
        .then(() => void assembler.nudge())
        .catch((err: Error) => log.error('recording a sample failed', { id: served.id, error: err.message }))
        .finally(() => recording.delete(write));
      recording.add(write);
    },
  });

  const status = (): DaemonStatus => {
    const sessions = store.listSessions();
    return {
      version: SERVER_VERSION,
      pid: process.pid,
      uptimeS: Math.round((Date.now() - startedAt) / 1000),
      connections: gateway.connections,
      weightVersion: weightVersion(),
      sessions: { total: sessions.length, optedIn: sessions.filter((s) => s.optedIn).length },
      counters: store.counters(),
      recipe: recipe.name,
      scoring: scoring.status(),
      training: trainer?.status() ?? null,
    };
  };

  const readJson = async (req: IncomingMessage): Promise<Record<string, unknown>> => {
    let text = '';
    for await (const part of req) {
      text += part;
      if (text.length > 64 * 1024) throw new Error('request body over 64 KiB');
    }
    const body: unknown = text ? JSON.parse(text) : {};
    if (typeof body !== 'object' || body === null) throw new Error('request body must be a JSON object');
    return body as Record<string, unknown>;
  };

  // The daemon's own control routes (the CLI's `weights` and `train` commands use them).
  const control = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (!trainer) return sendJson(res, 409, { error: { message: `the ${backend ? 'current' : 'missing'} backend cannot train`, type: 'conflict' } });
    try {
      if (path === '/weights' && req.method === 'GET') {
        return sendJson(res, 200, { serving: trainer.status().serving, pinned: trainer.status().pinned, versions: [...store.versions.getRange().map(({ value }) => value)] });
      }
      const body = req.method === 'POST' ? await readJson(req) : {};
      if (path === '/weights/rollback' && req.method === 'POST') return sendJson(res, 200, await trainer.rollback(String(body.version)));
      if (path === '/weights/pin' && req.method === 'POST') {
        return sendJson(res, 200, { serving: await trainer.pin(typeof body.version === 'string' ? body.version : null) });
      }
      if (path === '/train' && req.method === 'POST') return sendJson(res, 200, { version: await trainer.trainNow() });
    } catch (err) {
      return sendJson(res, 400, { error: { message: (err as Error).message, type: 'invalid_request_error' } });
    }
    sendJson(res, 404, { error: { message: `no route for ${req.method} ${path}`, type: 'not_found' } });
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path === '/healthz' && req.method === 'GET') return sendJson(res, 200, { ok: true, version: SERVER_VERSION });
    if (!bearerMatches(req.headers.authorization, token)) {
      return sendJson(res, 401, { error: { message: 'missing or wrong bearer token', type: 'authentication_error' } });
    }
    if (path === '/status' && req.method === 'GET') return sendJson(res, 200, status());
    if (path.startsWith('/v1/')) return void handleV1(req, res, path);
    if (path === '/train' || path === '/weights' || path.startsWith('/weights/')) return void control(req, res, path);
    sendJson(res, 404, { error: { message: `no route for ${req.method} ${path}`, type: 'not_found' } });
  };

  const server = createServer((req, res) => {
    try {
      handle(req, res);
    } catch (err) {
      log.error('request failed', { url: req.url, error: (err as Error).message });
      if (!res.headersSent) sendJson(res, 500, { error: { message: 'internal error', type: 'internal_error' } });
    }
  });
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (path !== '/ws') return refuseUpgrade(socket, '404 Not Found', `no WebSocket at ${path}; use /ws`);
    if (!bearerMatches(req.headers.authorization, token)) {
      log.warn('refused a WebSocket with a missing or wrong token', { remote: req.socket.remoteAddress });
      return refuseUpgrade(socket, '401 Unauthorized', 'missing or wrong bearer token');
    }
    gateway.wss.handleUpgrade(req, socket, head, (ws) => gateway.wss.emit('connection', ws, req));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  assembler.start();
  scoring.start();
  trainer?.start();
  const hostInUrl = host.includes(':') ? `[${host}]` : host;
  log.info('clawrl daemon listening', { host, port, dataDir: opts.dataDir });

  return {
    url: `http://${hostInUrl}:${port}`,
    wsUrl: `ws://${hostInUrl}:${port}/ws`,
    host,
    port,
    token,
    store,
    gateway,
    backend,
    status,
    assembler,
    scoring,
    trainer,
    async close() {
      // Stop taking work first, then let the loops and in-flight writes finish.
      await gateway.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all(recording);
      await assembler.stop();
      await scoring.stop();
      await trainer?.stop();
      await backend?.close();
      await store.close();
    },
  };
}
