// The web dashboard at /ui: static pages from daemon/ui/ (uPlot from node_modules, no CDN) and
// JSON under /ui/api/*. Logging in POSTs the token once and gets an HttpOnly, SameSite=Strict
// cookie holding a random session id, so the token is never in a URL or readable by scripts.
// The routes are public (auth: false) and check access themselves: static files hold no data;
// /ui/api/* needs the session cookie or the bearer token.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import type { DaemonStatus } from './types.ts';
import type { ScoreRecord, SessionRecord, Store, TurnRecord } from './store.ts';
import { bearerMatches } from './config.ts';
import { HttpError, readBody, requestUrl, sendError, sendJson, type Route } from './http.ts';
import { expectedStepMs, type VersionStats, type VersionStatsReader } from './stats.ts';
import type { StepProgress } from './trainer.ts';
import { MAX_ID_BYTES, idFits } from '../protocol/index.ts';

export interface DashboardOptions {
  /** The current token (it can be rotated). */
  token: () => string;
  store: Store;
  status: () => DaemonStatus;
  stats: VersionStatsReader;
}

/** GET /ui/api/overview: also what `status --watch` draws. */
export interface Overview {
  status: DaemonStatus;
  versions: VersionStats[];
  /** The step in progress, with how long it has run and how long steps have taken lately. */
  step: (StepProgress & { elapsedMs: number; expectedMs: number | null }) | null;
}

export interface Dashboard {
  routes: Route[];
  /** Whether a request to one of the daemon's own routes may use a dashboard session instead of the bearer token. */
  allows(req: IncomingMessage, path: string): boolean;
}

const COOKIE = 'clawrl_session';
const SESSION_MS = 12 * 60 * 60_000;
/** Each login needs the token; the cap only bounds memory if a client logs in in a loop. */
const MAX_SESSIONS = 64;
/** The control routes the weights page calls with its cookie; everything else keeps needing the token. */
const COOKIE_ROUTES = new Set(['/weights/rollback', '/weights/pin']);
/** Long texts (tool outputs can be megabytes) are cut for the browser; `sessions export` has them whole. */
const TEXT_LIMIT = 2_000;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function staticFiles(): Map<string, { type: string; body: Buffer }> {
  const ui = fileURLToPath(new URL('./ui/', import.meta.url));
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot'));
  const files: [string, string][] = [
    ['/ui/', join(ui, 'index.html')],
    ['/ui/app.js', join(ui, 'app.js')],
    ['/ui/style.css', join(ui, 'style.css')],
    ['/ui/vendor/uPlot.iife.min.js', join(uplot, 'uPlot.iife.min.js')],
    ['/ui/vendor/uPlot.min.css', join(uplot, 'uPlot.min.css')],
  ];
  return new Map(files.map(([path, file]) => [path, { type: TYPES[extname(file)]!, body: readFileSync(file) }]));
}

/** A query parameter naming a session: session keys are store keys, so a longer one names none and would not fit a key. */
function idParam(query: URLSearchParams, name: string): string | undefined {
  const value = query.get(name) || undefined;
  if (value !== undefined && !idFits(value)) throw new HttpError(400, `${name} is over the limit of ${MAX_ID_BYTES} bytes`);
  return value;
}

function intParam(query: URLSearchParams, name: string, fallback: number, max: number): number {
  const value = Number(query.get(name) ?? fallback);
  if (!Number.isInteger(value) || value < 1 || value > max) throw new HttpError(400, `${name} must be an integer from 1 to ${max}`);
  return value;
}

const clip = (text: string) => (text.length > TEXT_LIMIT ? `${text.slice(0, TEXT_LIMIT)}… (${text.length - TEXT_LIMIT} more characters)` : text);

function advantageSummary(score: ScoreRecord) {
  if (!score.advantages) return null;
  const trained = score.advantages.filter((_, i) => (score.mask?.[i] ?? 1) !== 0);
  return {
    tokens: score.advantages.length,
    trained: trained.length,
    mean: trained.length ? trained.reduce((a, b) => a + b, 0) / trained.length : null,
    min: trained.length ? Math.min(...trained) : null,
    max: trained.length ? Math.max(...trained) : null,
  };
}

function turnView(turn: TurnRecord, score: ScoreRecord | undefined) {
  return {
    sessionKey: turn.sessionKey,
    turnIndex: turn.turnIndex,
    createdAt: turn.createdAt,
    weightVersion: turn.weightVersion,
    trainedIn: turn.trainedIn ?? null,
    action: { text: clip(turn.action.text), toolCalls: turn.action.toolCalls.map((c) => ({ ...c, arguments: clip(c.arguments) })) },
    nextState: {
      ...turn.nextState,
      ...(turn.nextState.userMessage !== undefined && { userMessage: clip(turn.nextState.userMessage) }),
      toolResults: turn.nextState.toolResults.map((r) => ({ ...r, output: clip(r.output) })),
    },
    reward: turn.reward,
    hint: turn.hint,
    score: score ? { source: score.source, votes: score.votes, hintVotes: score.hintVotes, failures: score.failures, advantages: advantageSummary(score) } : null,
  };
}

function cookieOf(req: IncomingMessage): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === COOKIE) return value.join('=');
  }
  return undefined;
}

/**
 * SameSite ignores ports, so another web app on this host counts as same-site and could send the
 * cookie; a state-changing request with the cookie must therefore come from the dashboard's own origin.
 */
function fromOwnOrigin(req: IncomingMessage): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return true;
  const scheme = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  return req.headers.origin === `${scheme}://${req.headers.host}`;
}

export function createDashboard(opts: DashboardOptions): Dashboard {
  const { store } = opts;
  const files = staticFiles();
  /** Session id → when it expires and the token it was opened with: rotating the token ends every session. */
  const sessions = new Map<string, { expires: number; token: string }>();

  const hasSession = (req: IncomingMessage) => {
    const id = cookieOf(req);
    const session = id === undefined ? undefined : sessions.get(id);
    if (!session) return false;
    if (session.expires > Date.now() && session.token === opts.token()) return fromOwnOrigin(req);
    sessions.delete(id!);
    return false;
  };

  const sessionCookie = (req: IncomingMessage, id: string, maxAgeS: number) =>
    `${COOKIE}=${id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${(req.socket as TLSSocket).encrypted ? '; Secure' : ''}`;

  async function login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!fromOwnOrigin(req)) return sendError(res, 403, 'log in from the dashboard page', 'authentication_error');
    const given = new URLSearchParams((await readBody(req, 4096)).toString('utf8')).get('token') ?? '';
    const token = opts.token();
    if (!bearerMatches(`Bearer ${given}`, token)) return sendError(res, 401, 'wrong token', 'authentication_error');
    if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    sessions.set(id, { expires: Date.now() + SESSION_MS, token });
    res.writeHead(204, { 'set-cookie': sessionCookie(req, id, SESSION_MS / 1000), 'cache-control': 'no-store' });
    res.end();
  }

  function logout(req: IncomingMessage, res: ServerResponse): void {
    const id = cookieOf(req);
    if (id !== undefined && fromOwnOrigin(req)) sessions.delete(id);
    res.writeHead(204, { 'set-cookie': sessionCookie(req, '', 0) });
    res.end();
  }

  function overview(): Overview {
    const status = opts.status();
    const versions = opts.stats.read();
    const step = status.training?.step;
    return { status, versions, step: step ? { ...step, elapsedMs: Date.now() - step.startedAt, expectedMs: expectedStepMs(versions) } : null };
  }

  /**
   * One page of sessions in key order: those whose keys start with `prefix`, from just after the
   * key `after` (the previous page's `next`). A page costs its own sessions, never the whole list:
   * a store may hold 100,000 sessions.
   */
  function sessionPage(query: URLSearchParams) {
    const prefix = idParam(query, 'prefix') ?? '';
    const after = idParam(query, 'after');
    const limit = intParam(query, 'limit', 50, 500);
    const page: SessionRecord[] = [];
    let more = false;
    for (const { key, value } of store.sessions.getRange({ start: after ?? prefix, limit: limit + 2 })) {
      if (key === after) continue;
      if (!key.startsWith(prefix)) break;
      if (page.length === limit) {
        more = true;
        break;
      }
      page.push(value);
    }
    return {
      total: store.sessionCount(),
      optedIn: store.optedInCount(),
      sessions: page.map((s) => ({ ...s, turns: store.turns.getCount({ start: [s.sessionKey], end: [s.sessionKey, Infinity] }) })),
      next: more ? page.at(-1)!.sessionKey : null,
    };
  }

  /** Newest first. Sorting needs every matching turn, so this scans them (or one session's). */
  function turns(query: URLSearchParams) {
    const session = idParam(query, 'session');
    const reward = query.get('reward') || undefined;
    if (reward !== undefined && !['1', '0', '-1', 'none'].includes(reward)) throw new HttpError(400, 'reward must be 1, 0, -1 or none');
    const limit = intParam(query, 'limit', 100, 1000);
    const matching = [...store.turnsOf(session)].filter((t) => reward === undefined || t.reward === (reward === 'none' ? null : Number(reward)));
    matching.sort((a, b) => b.createdAt - a.createdAt);
    return {
      total: matching.length,
      turns: matching.slice(0, limit).map((t) => turnView(t, store.scores.get([t.sessionKey, t.turnIndex]))),
    };
  }

  async function api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (!bearerMatches(req.headers.authorization, opts.token()) && !hasSession(req)) {
      return sendError(res, 401, 'log in at /ui/ or send the bearer token', 'authentication_error');
    }
    if (req.method !== 'GET') return sendError(res, 405, `use GET for ${url.pathname}`, 'invalid_request_error');
    res.setHeader('cache-control', 'no-store');
    if (url.pathname === '/ui/api/overview') return sendJson(res, 200, overview());
    if (url.pathname === '/ui/api/sessions') return sendJson(res, 200, sessionPage(url.searchParams));
    if (url.pathname === '/ui/api/turns') return sendJson(res, 200, turns(url.searchParams));
    sendError(res, 404, `no dashboard data at ${url.pathname}`, 'not_found');
  }

  function page(req: IncomingMessage, res: ServerResponse, path: string): void {
    const file = files.get(path);
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) return sendError(res, 404, `no dashboard page at ${req.method} ${path}`, 'not_found');
    res.writeHead(200, { 'content-type': file.type, 'content-length': file.body.length, ...SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    try {
      if (path.startsWith('/ui/api/')) return await api(req, res, requestUrl(req));
      if (path === '/ui/login' && req.method === 'POST') return await login(req, res);
      if (path === '/ui/logout' && req.method === 'POST') return logout(req, res);
      page(req, res, path);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err.status, err.message, 'invalid_request_error');
      throw err;
    }
  }

  return {
    routes: [
      {
        path: '/ui',
        auth: false,
        handle: (_req, res) => {
          res.writeHead(308, { location: '/ui/' });
          res.end();
        },
      },
      { path: '/ui/', auth: false, handle },
    ],
    allows: (req, path) => COOKIE_ROUTES.has(path) && hasSession(req),
  };
}
