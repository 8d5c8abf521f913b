// The daemon's own control routes, used by the CLI's `weights` and `train` commands.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Trainer } from './trainer.ts';
import type { Store } from './store.ts';
import { HttpError, readJsonObject, sendError, sendJson, type Route } from './http.ts';
import { VERSION_PATTERN } from './weights.ts';

/**
 * The body's `version`: base or a version name, or (where `nullable`, for unpin) null. Anything
 * else is refused, naming what came: a number once unpinned instead.
 */
async function versionOf(req: IncomingMessage, nullable: boolean): Promise<string | null> {
  const body = await readJsonObject(req);
  const expected = `"base" or a version name such as "v000003"${nullable ? ', or null to unpin' : ''}`;
  if (!('version' in body)) throw new HttpError(400, `version is missing: give ${expected}`);
  const { version } = body;
  if (typeof version === 'string' && (version === 'base' || VERSION_PATTERN.test(version))) return version;
  if (nullable && version === null) return null;
  const got = typeof version === 'string' ? JSON.stringify(version.slice(0, 100)) : typeof version === 'object' ? (Array.isArray(version) ? 'an array' : version === null ? 'null' : 'an object') : String(version);
  throw new HttpError(400, `version must be ${expected}, got ${got}`);
}

export function controlRoutes(trainer: Trainer | undefined, store: Store): Route[] {
  const guarded =
    (fn: (req: IncomingMessage, res: ServerResponse, trainer: Trainer) => Promise<void>, method: string) =>
    async (req: IncomingMessage, res: ServerResponse, path: string) => {
      if (req.method !== method) return sendError(res, 405, `use ${method} for ${path}`, 'invalid_request_error');
      if (!trainer) return sendError(res, 409, 'this backend serves only and cannot train', 'conflict');
      try {
        await fn(req, res, trainer);
      } catch (err) {
        sendError(res, err instanceof HttpError ? err.status : 400, (err as Error).message, 'invalid_request_error');
      }
    };
  return [
    {
      path: '/weights',
      handle: guarded(async (_req, res, t) => {
        const { serving, pinned } = t.status();
        sendJson(res, 200, { serving, pinned, versions: [...store.versions.getRange().map(({ value }) => value)] });
      }, 'GET'),
    },
    {
      path: '/weights/rollback',
      handle: guarded(async (req, res, t) => sendJson(res, 200, await t.rollback((await versionOf(req, false))!)), 'POST'),
    },
    {
      path: '/weights/pin',
      handle: guarded(async (req, res, t) => sendJson(res, 200, { serving: await t.pin(await versionOf(req, true)) }), 'POST'),
    },
    { path: '/train', handle: guarded(async (_req, res, t) => sendJson(res, 200, { version: await t.trainNow() }), 'POST') },
  ];
}
