// Redaction of a large value (a sample whose request holds megabytes of tool output) in a worker
// thread (off-loop.ts): the rules run at 7-80 ms per MiB, during which the daemon's event loop
// would ack no event and answer no other request. Small values are redacted in place, at once.
import { OffLoop, serveOffLoop } from './off-loop.ts';
import { customPatternSources, redactRecord, setCustomPatterns } from './redact.ts';

/** Values whose strings add up to more characters than this are redacted in the worker. */
export const INLINE_REDACT_CHARS = 256 * 1024;
/** Each string costs the rules about as much as this many characters, however short (~6 µs). */
const CHARS_PER_STRING = 64;
const ROLE = 'clawrl-redact';

interface RedactRequest {
  value: object;
  /** The user's patterns, which the worker sets when they are not its own yet. */
  patterns: readonly string[];
}

/** A value with its secrets redacted, and how many were found. */
export interface Redacted<T> {
  value: T;
  found: number;
}

const worker = new OffLoop<RedactRequest, Redacted<unknown>>(ROLE, import.meta.url, 'redaction');

/** True when the strings inside `value` (objects, arrays) add up to more than `budget` characters, each counted CHARS_PER_STRING longer. */
function longerThan(value: unknown, budget: number): boolean {
  let left = budget;
  const walk = (v: unknown): boolean => {
    if (typeof v === 'string') return (left -= v.length + CHARS_PER_STRING) < 0;
    if (Array.isArray(v)) return v.some(walk);
    if (v && typeof v === 'object') return Object.values(v).some(walk);
    return false;
  };
  return walk(value);
}

/** A record redacted as `redactRecord` does it: synchronously when it is small, in the worker when it is large. */
export function redactSized<T extends object>(value: T): Redacted<T> | Promise<Redacted<T>> {
  if (longerThan(value, INLINE_REDACT_CHARS)) return worker.call({ value, patterns: customPatternSources() }) as Promise<Redacted<T>>;
  return redactCounted(value);
}

function redactCounted<T extends object>(value: T): Redacted<T> {
  const count = { found: 0 };
  return { value: redactRecord(value, count), found: count.found };
}

serveOffLoop<RedactRequest, Redacted<unknown>>(ROLE, ({ value, patterns }) => {
  const own = customPatternSources();
  if (patterns.length !== own.length || patterns.some((p, i) => p !== own[i])) setCustomPatterns([...patterns]);
  return redactCounted(value);
});
