// Every HTTP route of the daemon's one port, in one table, and the dispatcher that applies it:
// the Host check, the bearer token (or the dashboard's cookie), 404 and 405. The plugin's
// WebSocket (/ws) is an upgrade, not a request: server.ts takes it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { SERVER_VERSION } from './gateway.ts';
import { bearerMatches, rotateToken } from './config.ts';
import { HttpError, READ, findRoute, requestUrl, sendError, sendJson, type Route } from './http.ts';
import { controlHandlers } from './control.ts';
import { hintHandlers } from './hints.ts';
import { createDashboard } from './dashboard.ts';
import { errorMessage } from './errors.ts';
import type { Pipeline } from './pipeline.ts';
import type { Logger } from './log.ts';

/** The bearer token, which POST /token/rotate replaces while the daemon runs. */
export class Access {
  constructor(
    private readonly dataDir: string,
    private current: string,
  ) {}

  get token(): string {
    return this.current;
  }

  allows(authorization: string | undefined): boolean {
    return bearerMatches(authorization, this.current);
  }

  rotate(): void {
    this.current = rotateToken(this.dataDir);
  }
}

export interface RouterOptions {
  /** The host the daemon is bound to: requests naming another are refused (see hostAllowed). */
  host: string;
  log: Logger;
  /** Serve GET /metrics without the token. */
  metricsPublic: boolean;
}

/** The request handler of the daemon's port. */
export function createRouter(p: Pipeline, access: Access, opts: RouterOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { log, host } = opts;
  const control = controlHandlers(p.trainer, p.store, p.stats.health, p.guard);
  const hints = hintHandlers(p.hints, (installId) => p.store.installSuffix(installId));
  const dashboard = createDashboard({ token: () => access.token, store: p.store, status: p.status, stats: p.stats });

  // A path ending in '/' is a prefix; the first route that matches answers. Auth defaults to the token.
  const routes: Route[] = [
    { methods: READ, path: '/healthz', auth: false, handle: (_req, res) => sendJson(res, 200, { ok: true, version: SERVER_VERSION }) },
    { methods: READ, path: '/status', handle: (_req, res) => sendJson(res, 200, p.status()) },
    // OpenAI-compatible; api.ts answers each endpoint's methods.
    { path: '/v1/', handle: p.metrics.timeServing(p.serve) },
    // GET /metrics: public with --metrics-public.
    p.metrics.route(opts.metricsPublic),
    // /ui and /ui/…: public static files; /ui/api/… checks the dashboard's cookie itself.
    ...dashboard.routes,
    { methods: ['GET'], path: '/weights', handle: control.weights },
    { methods: ['POST'], path: '/weights/rollback', handle: control.rollback },
    { methods: ['POST'], path: '/weights/pin', handle: control.pin },
    { methods: ['POST'], path: '/train', handle: control.train },
    { methods: ['GET'], path: '/hints', handle: hints.list },
    { methods: ['DELETE'], path: '/hints/', handle: hints.remove },
    {
      // A new token takes effect at once; plugins connected with the old one are dropped.
      methods: ['POST'],
      path: '/token/rotate',
      handle: (_req, res) => {
        try {
          access.rotate();
        } catch (err) {
          return sendError(res, 409, errorMessage(err), 'conflict');
        }
        for (const socket of p.gateway.wss.clients) socket.close(1008, 'token rotated');
        log.warn('access token rotated; plugins must be given the new token');
        sendJson(res, 200, { rotated: true });
      },
    },
  ];

  const dispatch = async (req: IncomingMessage, res: ServerResponse) => {
    if (!hostAllowed(req.headers.host, host)) return sendError(res, 403, `Host ${JSON.stringify(req.headers.host)} is not this daemon's (it answers ${host} and loopback names)`, 'permission_error');
    const path = requestUrl(req).pathname;
    const route = findRoute(routes, path);
    if (route?.auth !== false && !access.allows(req.headers.authorization) && !dashboard.allows(req, path)) {
      return sendError(res, 401, 'missing or wrong bearer token', 'authentication_error');
    }
    if (!route) return sendError(res, 404, `no route for ${req.method} ${path}`, 'not_found');
    if (route.methods && !route.methods.includes(req.method ?? '')) return sendError(res, 405, `use ${route.methods[0]} for ${path}`, 'invalid_request_error');
    await route.handle(req, res, path);
  };

  return (req, res) => {
    dispatch(req, res).catch((err: unknown) => {
      // Malformed input that a route did not catch is still the client's error, not ours.
      const clientError = err instanceof HttpError ? err.status : err instanceof URIError ? 400 : undefined;
      if (clientError === undefined) log.error('request failed', { url: req.url, error: err instanceof Error ? err.stack : String(err) });
      const message = err instanceof URIError ? `the URL is not valid percent-encoding: ${req.url}` : errorMessage(err);
      if (res.headersSent) res.destroy();
      else if (clientError !== undefined) sendError(res, clientError, message, 'invalid_request_error');
      else sendError(res, 500, 'internal error', 'internal_error');
    });
  };
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
