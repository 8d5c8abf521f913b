// The daemon's own control routes, used by the CLI's `weights` and `train` commands.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Trainer } from './trainer.ts';
import type { Store } from './store.ts';
import { HttpError, readJsonObject, sendError, sendJson, type Route } from './http.ts';

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
      handle: guarded(async (req, res, t) => sendJson(res, 200, await t.rollback(String((await readJsonObject(req)).version))), 'POST'),
    },
    {
      path: '/weights/pin',
      handle: guarded(async (req, res, t) => {
        const { version } = await readJsonObject(req);
        sendJson(res, 200, { serving: await t.pin(typeof version === 'string' ? version : null) });
      }, 'POST'),
    },
    { path: '/train', handle: guarded(async (_req, res, t) => sendJson(res, 200, { version: await t.trainNow() }), 'POST') },
  ];
}
