// Small HTTP helpers shared by the daemon's routes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorMessage } from './errors.ts';

export interface Route {
  /** An exact path, or a prefix when it ends in '/'. */
  path: string;
  /** False for routes that are public or check access themselves; default true (bearer token). */
  auth?: boolean;
  /** The methods it answers, the first named in the 405 for any other; any method when absent. */
  methods?: readonly string[];
  handle(req: IncomingMessage, res: ServerResponse, path: string): void | Promise<void>;
}

/** The methods of a route that only reads. */
export const READ = ['GET', 'HEAD'] as const;

export function findRoute(routes: readonly Route[], path: string): Route | undefined {
  return routes.find((r) => (r.path.endsWith('/') ? path.startsWith(r.path) : path === r.path));
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** An error in OpenAI's shape: {error: {message, type, ...}}. */
export function sendError(res: ServerResponse, status: number, message: string, type: string, extra: Record<string, unknown> = {}): void {
  sendJson(res, status, { error: { message, type, ...extra } });
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The request's target as a URL. Node's parser lets through targets WHATWG URLs refuse
 * (`//x:99999`, `//a b`): those are the client's error (400), not the daemon's.
 */
export function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://x');
  } catch {
    throw new HttpError(400, `malformed request target ${JSON.stringify(req.url)}`);
  }
}

/** Reads a request body, refusing (413) more than `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${limit} bytes`);
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of req) {
    size += (part as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body exceeds the limit of ${limit} bytes`);
    parts.push(part as Buffer);
  }
  return Buffer.concat(parts);
}

/** A small JSON object body (control routes); 400 for anything else. */
export async function readJsonObject(req: IncomingMessage, limit = 64 * 1024): Promise<Record<string, unknown>> {
  const text = (await readBody(req, limit)).toString('utf8');
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : {};
  } catch (err) {
    throw new HttpError(400, `the request body is not valid JSON: ${errorMessage(err)}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}
