// The daemon's own control routes, used by the CLI's `weights` and `train` commands.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Trainer } from './trainer.ts';
import type { Store, WeightVersionRecord } from './store.ts';
import type { HealthReader, VersionHealth, VersionVerdict } from './health.ts';
import type { Guard } from './guard.ts';
import { HttpError, readJsonObject, sendError, sendJson } from './http.ts';
import { errorMessage } from './errors.ts';
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

/** GET /weights: every version with its live-traffic health and the guard's (or a person's) verdict. */
export interface WeightsListing {
  serving: string;
  pinned: string | null;
  versions: (WeightVersionRecord & { health: VersionHealth | null; verdict: VersionVerdict | null })[];
  /** base's health: what the first version is compared with. */
  base: VersionHealth | null;
}

/** The handlers of the CLI's `weights` and `train` commands; the route table (routes.ts) gives their paths and methods. */
export function controlHandlers(trainer: Trainer | undefined, store: Store, health: HealthReader, guard?: Guard) {
  const guarded = (fn: (req: IncomingMessage, res: ServerResponse, trainer: Trainer) => Promise<void>) => async (req: IncomingMessage, res: ServerResponse) => {
    if (!trainer) return sendError(res, 409, 'this backend serves only and cannot train', 'conflict');
    try {
      await fn(req, res, trainer);
    } catch (err) {
      sendError(res, err instanceof HttpError ? err.status : 400, errorMessage(err), 'invalid_request_error');
    }
  };
  return {
    weights: guarded(async (_req, res, t) => {
      const { serving, pinned } = t.status();
      const measured = health.read();
      const versions = [...store.versionRecords()].map((record) => ({ ...record, health: measured.get(record.version) ?? null, verdict: health.verdicts.get(record.version) ?? null }));
      sendJson(res, 200, { serving, pinned, versions, base: measured.get('base') ?? null } satisfies WeightsListing);
    }),
    rollback: guarded(async (req, res, t) => {
      const version = (await versionOf(req, false))!;
      const record = await t.rollback(version);
      // A person's choice wins: the guard never rolls this version back on its own.
      await guard?.keptByPerson(version);
      sendJson(res, 200, record);
    }),
    pin: guarded(async (req, res, t) => sendJson(res, 200, { serving: await t.pin(await versionOf(req, true)) })),
    train: guarded(async (_req, res, t) => sendJson(res, 200, { version: await t.trainNow() })),
  };
}
