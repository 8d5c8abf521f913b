// Canary rollout: a new version first serves a share of sessions, beside the version serving
// everyone else, until the guard's sequential test decides (guard.ts); then all traffic, or none.
// A session stays on one side for the whole canary (its turns are one conversation, and a reply
// from one version followed by one from another would mix their ratings), drawn by a hash of the
// session and the canary version, so each canary draws its sessions afresh and a restart draws
// the same. Requests without a session (no plugin headers) stay on the main version.
import { createHash } from 'node:crypto';

/**
 * Default share: 0, every version serves everyone at once (as before canaries), watched by the
 * guard. clawrl mostly serves one person with one or a few long sessions, and a whole-session
 * canary splits nothing there: with one session, a share routes all of it or none of it. Where a
 * gateway serves many sessions at once (a team), `--canary 0.2` puts a fifth of them at risk
 * while the test runs and still gives the test a fifth of the rated turns.
 */
export const DEFAULT_CANARY_SHARE = 0;

/** Whether this session is served by the canary version, for a canary serving `share` of sessions. */
export function inCanary(session: string, canaryVersion: string, share: number): boolean {
  if (share <= 0) return false;
  if (share >= 1) return true;
  const digest = createHash('sha256').update(canaryVersion).update('\0').update(session).digest();
  return digest.readUInt32BE(0) / 2 ** 32 < share;
}
