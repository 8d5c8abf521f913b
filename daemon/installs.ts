// Several OpenClaw installs (state folders: a laptop and a desktop, say) may send to one daemon,
// and each has its own sessions under the same keys (`agent:main:main` in every install). The
// first install to connect, and a plugin that names none (older ones), is the home install: its
// session keys are stored as they are. Every other install's session keys carry its suffix, and
// so do its hints' agents, so that two installs' chats never merge into one session (one's reply
// taking the other's message for its next state) nor share hints.
import { createHash } from 'node:crypto';

const SUFFIX = /@install-[0-9a-f]{12}$/;

/** What an install's session keys end with when it is not the home install. */
export function installSuffix(installId: string): string {
  return `@install-${createHash('sha256').update(installId).digest('hex').slice(0, 12)}`;
}

/** The install suffix a stored session key (or hint agent) ends with; '' for the home install's. */
export function suffixOf(key: string): string {
  return SUFFIX.exec(key)?.[0] ?? '';
}
