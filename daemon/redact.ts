// Secrets are redacted before anything is stored: API keys of common providers, bearer tokens,
// private keys, passwords in URLs, and KEY=value pairs whose key names a secret. Users add their
// own patterns with `start --redact-pattern <regex>` (repeatable).
//
// The patterns favour recall on well-known key formats and stay linear-time (no nested
// quantifiers), since they run over every stored string.

export const REDACTED = '[REDACTED]';

interface Rule {
  name: string;
  pattern: RegExp;
  /** Replacement; defaults to REDACTED for the whole match. */
  replace?: string;
}

const BUILTIN: Rule[] = [
  { name: 'private key', pattern: /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g },
  { name: 'anthropic key', pattern: /\bsk-ant-[A-Za-z0-9_-]{20,}/g },
  { name: 'openai key', pattern: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g },
  { name: 'github token', pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})/g },
  { name: 'slack token', pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  { name: 'aws access key', pattern: /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g },
  { name: 'google api key', pattern: /\bAIza[A-Za-z0-9_-]{35}/g },
  { name: 'stripe key', pattern: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}/g },
  { name: 'huggingface token', pattern: /\bhf_[A-Za-z0-9]{30,}/g },
  { name: 'jwt', pattern: /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g },
  { name: 'bearer token', pattern: /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{12,}/gi, replace: `$1 ${REDACTED}` },
  { name: 'password in url', pattern: /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]+:)[^\s@/]+@/gi, replace: `$1${REDACTED}@` },
  {
    name: 'secret assignment',
    // KEY=value, KEY: value, "key": "value" where the key names a secret.
    pattern: /\b([A-Za-z0-9_.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential|auth)[A-Za-z0-9_.-]*["']?\s*[:=]\s*["']?)(?!\[REDACTED\]|(?:Bearer|Basic|Token)\s)([^\s"',;]{4,})/gi,
    replace: `$1${REDACTED}`,
  },
];

let custom: Rule[] = [];
let anyRule = prefilter();

/**
 * One case-insensitive pass that matches wherever any rule could: most strings hold no secret,
 * and one scan is far cheaper than one per rule (the ingest path runs this on every event).
 */
function prefilter(): RegExp {
  return new RegExp([...BUILTIN, ...custom].map((r) => `(?:${r.pattern.source})`).join('|'), 'i');
}

/** Adds user patterns (regular expression sources); throws naming a pattern that does not compile. */
export function setCustomPatterns(sources: string[]): void {
  custom = sources.map((source, i) => {
    try {
      return { name: `custom pattern ${i + 1}`, pattern: new RegExp(source, 'g') };
    } catch (err) {
      throw new Error(`--redact-pattern ${JSON.stringify(source)} is not a valid regular expression: ${(err as Error).message}`);
    }
  });
  anyRule = prefilter();
}

/** Counts what a redaction pass replaced. */
export interface RedactionCount {
  found: number;
}

export function redactSecrets(text: string, count?: RedactionCount): string {
  if (!anyRule.test(text)) return text;
  let out = text;
  for (const rule of [...BUILTIN, ...custom]) {
    out = out.replace(rule.pattern, (...args) => {
      if (count) count.found++;
      if (rule.replace === undefined) return REDACTED;
      // Re-apply the rule's replacement to this one match to expand $1.
      return (args[0] as string).replace(new RegExp(rule.pattern.source, rule.pattern.flags.replace('g', '')), rule.replace);
    });
  }
  return out;
}

/** Redacts every string inside a plain JSON-like value (objects, arrays), returning a copy. */
export function redactDeep<T>(value: T, count?: RedactionCount): T {
  if (typeof value === 'string') return redactSecrets(value, count) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, count)) as T;
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, count)])) as T;
  }
  return value;
}
