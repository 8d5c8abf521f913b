// Secrets are redacted before anything is stored: API keys of common providers, bearer tokens,
// private keys, passwords in URLs, KEY=value pairs whose key names a secret, and the string under
// an object key that names one ({"DB_PASSWORD": "…"}). Users add their own patterns with
// `start --redact-pattern <regex>` (repeatable). A stored record's ids (its session key, run and
// call ids) are never touched: they are what the record is filed under, not secrets.
//
// A key names a secret by how it ends (…token, …secret, …password, …api_key, a word pass, auth,
// authorization or cookie), not by what it contains: `max_tokens`, `author`, `passport` or
// `agent:secretary:main` are not secrets, and a sample found holding a secret is never trained on.
//
// Every built-in rule runs in linear time, since it runs over every stored string and a tool
// output can be a megabyte of base64. JavaScript's regular expressions backtrack, so a pattern
// that can start at many places inside one long run of characters and scan that run from each is
// quadratic (a 200 KB base64url blob once blocked the event loop for seconds). The regular
// expressions kept below start at a literal prefix and end in an open-ended repeat, so a failed
// start costs at most its fixed length; the three rules that need something after a run (JWTs,
// passwords in URLs, KEY=value) are scanned by hand so that no stretch is read more than a few
// times. User patterns run as given: keeping them linear is up to their author.
import { errorMessage } from './errors.ts';

export const REDACTED = '[REDACTED]';

/** Counts what a redaction pass replaced. */
export interface RedactionCount {
  found: number;
}

interface Rule {
  name: string;
  /** The text with this rule's matches replaced, each counted in `count`. */
  apply(text: string, count: RedactionCount): string;
}

function regexRule(name: string, pattern: RegExp, replace: (...matchAndGroups: string[]) => string = () => REDACTED): Rule {
  return {
    name,
    apply: (text, count) =>
      text.replace(pattern, (...args: string[]) => {
        count.found++;
        return replace(...args);
      }),
  };
}

// Character classes, by UTF-16 code unit.
const isLetter = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const isDigit = (c: number) => c >= 48 && c <= 57;
/** \w (what \b looks at). */
const isWord = (c: number) => isLetter(c) || isDigit(c) || c === 95;
/** [A-Za-z0-9_-]: a base64url character, as in a JWT's segments. */
const isBase64Url = (c: number) => isWord(c) || c === 45;
/** [A-Za-z0-9_.-]: a character of a KEY in KEY=value. */
const isKeyChar = (c: number) => isBase64Url(c) || c === 46;
/** [a-z0-9+.-] without case: a URL scheme's character. */
const isSchemeChar = (c: number) => isLetter(c) || isDigit(c) || c === 43 || c === 45 || c === 46;
/** JavaScript's \s. */
const isSpace = (c: number) =>
  c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000 || c === 0xfeff;
const isQuote = (c: number) => c === 34 || c === 39;
/** [^\s"',;]: a character of the value in KEY=value. */
const isValueChar = (c: number) => !isSpace(c) && !isQuote(c) && c !== 44 && c !== 59;
/** [^\s:/@]: a URL's user name. */
const isUserChar = (c: number) => !isSpace(c) && c !== 58 && c !== 47 && c !== 64;
/** [^\s@/]: a URL's password. */
const isPasswordChar = (c: number) => !isSpace(c) && c !== 64 && c !== 47;

/** The end of the run of `is` characters that starts at `from`. */
function runEnd(text: string, from: number, is: (c: number) => boolean): number {
  let i = from;
  while (i < text.length && is(text.charCodeAt(i))) i++;
  return i;
}

/** Whether \b holds before `i`, where text[i] is a word character. */
const wordStart = (text: string, i: number) => i === 0 || !isWord(text.charCodeAt(i - 1));

/**
 * eyJ<8+>.eyJ<8+>.<8+> (base64url segments), starting at a word boundary. Every start inside one
 * run of base64url characters reaches the same end of that run and fails the same way there, so
 * after a failed start the scan goes on from the run's end.
 */
const jwt: Rule = {
  name: 'jwt',
  apply(text, count) {
    let out = '';
    let kept = 0;
    for (let i = text.indexOf('eyJ'); i >= 0; ) {
      if (!wordStart(text, i)) {
        i = text.indexOf('eyJ', i + 1);
        continue;
      }
      const end1 = runEnd(text, i + 3, isBase64Url);
      let end = -1;
      if (end1 - i - 3 >= 8 && text.startsWith('.eyJ', end1)) {
        const end2 = runEnd(text, end1 + 4, isBase64Url);
        if (end2 - end1 - 4 >= 8 && text.charCodeAt(end2) === 46) {
          const end3 = runEnd(text, end2 + 1, isBase64Url);
          if (end3 - end2 - 1 >= 8) end = end3;
        }
      }
      if (end < 0) {
        i = text.indexOf('eyJ', end1);
        continue;
      }
      count.found++;
      out += text.slice(kept, i) + REDACTED;
      kept = end;
      i = text.indexOf('eyJ', end);
    }
    return kept === 0 ? text : out + text.slice(kept);
  },
};

/**
 * scheme://user:PASSWORD@ → scheme://user:[REDACTED]@. Found from each "://": the scheme is read
 * backwards, the user and password forwards, and none of these runs can hold another "://".
 */
const passwordInUrl: Rule = {
  name: 'password in url',
  apply(text, count) {
    let out = '';
    let kept = 0;
    for (let k = text.indexOf('://'); k >= 0; k = text.indexOf('://', k + 1)) {
      // A scheme: [a-z][a-z0-9+.-]* right before "://", its first letter at a word boundary.
      let scheme = false;
      for (let s = k - 1; s >= kept && isSchemeChar(text.charCodeAt(s)); s--) {
        if (isLetter(text.charCodeAt(s)) && wordStart(text, s)) scheme = true;
      }
      if (!scheme) continue;
      const userEnd = runEnd(text, k + 3, isUserChar);
      if (userEnd === k + 3 || text.charCodeAt(userEnd) !== 58) continue;
      const passwordEnd = runEnd(text, userEnd + 1, isPasswordChar);
      if (passwordEnd === userEnd + 1 || text.charCodeAt(passwordEnd) !== 64) continue;
      count.found++;
      out += text.slice(kept, userEnd + 1) + REDACTED;
      kept = passwordEnd;
      k = passwordEnd;
    }
    return kept === 0 ? text : out + text.slice(kept);
  },
};

/** Where a key naming a secret could be: one scan of a string before looking at each ':' and '='. */
const SECRET_NAME_HINT = /pass|secret|token|auth|cookie|credential|(?:api|access|private|signing)[_.-]?key/i;
/**
 * The end of a key that names a secret: …token, …secret, …password, …passphrase, …api_key (or
 * access, private, secret, signing key), …credential(s), or the word pass, auth, authorization or
 * cookie; then any numbering (DB_PASSWORD_2). Plurals and longer words are not (max_tokens,
 * tokenizer, author, passport, bypass). Linear: it can only start at one of those words, and the
 * numbering takes a digit a repeat.
 */
const SECRET_NAME = /(?:token|secret|passw(?:or)?d|passphrase|(?:api|access|private|secret|signing)[_.-]?key|credentials?|(?<![A-Za-z0-9])(?:pass|auth|authorization|cookie))(?:[_.-]*\d)*$/i;

/** Whether a key (KEY=value, a JSON object's key) names a secret. */
export const keyNamesSecret = (key: string): boolean => SECRET_NAME.test(key);
/** A value that is already redacted, or an Authorization scheme (the bearer rule's business). */
const NOT_A_VALUE = /\[REDACTED\]|(?:Bearer|Basic|Token)\s/iy;

/**
 * KEY=value, KEY: value, "key": "value" where KEY (a run of [A-Za-z0-9_.-]) names a secret and the
 * value is 4+ characters of [^\s"',;]. Found from each ':' or '=': the key is read backwards (it
 * ends at that operator, so no key is read twice) and the value forwards; operators inside a
 * redacted value are passed over, as the regular expression this replaces did.
 */
const secretAssignment: Rule = {
  name: 'secret assignment',
  apply(text, count) {
    if (!SECRET_NAME_HINT.test(text)) return text;
    let out = '';
    let kept = 0;
    for (let k = 0; k < text.length; k++) {
      const op = text.charCodeAt(k);
      if (op !== 58 && op !== 61) continue;
      // Backwards: \s*, an optional quote, then the key, none of it before the last replacement.
      let j = k;
      while (j > kept && isSpace(text.charCodeAt(j - 1))) j--;
      if (j > kept && isQuote(text.charCodeAt(j - 1))) j--;
      let keyStart = j;
      while (keyStart > kept && isKeyChar(text.charCodeAt(keyStart - 1))) keyStart--;
      if (keyStart === j || !keyNamesSecret(text.slice(keyStart, j))) continue;
      // Forwards: \s*, an optional quote, then the value.
      let v = runEnd(text, k + 1, isSpace);
      if (v < text.length && isQuote(text.charCodeAt(v))) v++;
      NOT_A_VALUE.lastIndex = v;
      if (NOT_A_VALUE.test(text)) continue;
      const valueEnd = runEnd(text, v, isValueChar);
      if (valueEnd - v < 4) continue;
      count.found++;
      out += text.slice(kept, v) + REDACTED;
      kept = valueEnd;
      k = valueEnd - 1;
    }
    return kept === 0 ? text : out + text.slice(kept);
  },
};

// In this order: a later rule sees the earlier ones' [REDACTED] (the KEY=value rule leaves those alone).
// The key formats first, each its own regular expression.
const KEY_FORMATS: Rule[] = [
  regexRule('private key', /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g),
  regexRule('anthropic key', /\bsk-ant-[A-Za-z0-9_-]{20,}/g),
  regexRule('openai key', /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g),
  regexRule('github token', /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})/g),
  regexRule('slack token', /\bxox[abposr]-[A-Za-z0-9-]{10,}/g),
  regexRule('aws access key', /\b(?:AKIA|ASIA)[A-Z0-9]{16}\b/g),
  regexRule('google api key', /\bAIza[A-Za-z0-9_-]{35}/g),
  regexRule('stripe key', /\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}/g),
  regexRule('huggingface token', /\bhf_[A-Za-z0-9]{30,}/g),
];
/**
 * Where any of KEY_FORMATS could start: one scan of a string instead of nine. Most strings hold
 * no key, and every stored event has several short ones (its session key, run id, kind), so
 * the nine scans were most of redaction's cost. Wider than the rules (it ignores case and what
 * follows each prefix); where it matches, the rules run as before.
 */
const KEY_FORMAT_START = /-----BEGIN |\b(?:sk-|gh[pousr]_|github_pat_|xox[abposr]-|AKIA|ASIA|AIza|[rs]k_(?:live|test)_|hf_)/i;
const LATER: Rule[] = [
  jwt,
  regexRule('bearer token', /\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{12,}/gi, (_match, scheme) => `${scheme} ${REDACTED}`),
  passwordInUrl,
  secretAssignment,
];

let custom: Rule[] = [];
let customSources: string[] = [];

/** The user patterns set, as given (a worker that redacts sets the same). */
export function customPatternSources(): readonly string[] {
  return customSources;
}

/** Adds user patterns (regular expression sources); throws naming a pattern that does not compile. */
export function setCustomPatterns(sources: string[]): void {
  customSources = [...sources];
  custom = sources.map((source, i) => {
    try {
      return regexRule(`custom pattern ${i + 1}`, new RegExp(source, 'g'));
    } catch (err) {
      throw new Error(`--redact-pattern ${JSON.stringify(source)} is not a valid regular expression: ${errorMessage(err)}`, { cause: err });
    }
  });
}

export function redactSecrets(text: string, count: RedactionCount = { found: 0 }): string {
  let out = text;
  // Nothing before LATER changes a string the prefilter finds nothing in.
  if (KEY_FORMAT_START.test(text)) for (const rule of KEY_FORMATS) out = rule.apply(out, count);
  for (const rule of LATER) out = rule.apply(out, count);
  for (const rule of custom) out = rule.apply(out, count);
  return out;
}

/**
 * `value` with every string inside it (objects, arrays) redacted, and every string of 4 or more
 * characters under an object key that names a secret replaced whole. Copies only what changed:
 * `value` itself comes back when nothing did, as for nearly every event, which then costs no
 * allocation.
 */
export function redactDeep<T>(value: T, count: RedactionCount = { found: 0 }): T {
  if (typeof value === 'string') return redactSecrets(value, count) as T;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const redacted = redactDeep(value[i] as unknown, count);
      if (redacted !== value[i]) (copy ??= value.slice())[i] = redacted;
    }
    return (copy ?? value) as T;
  }
  if (value && typeof value === 'object' && !(value instanceof Uint8Array)) return redactFields(value, count, NO_FIELDS);
  return value;
}

/** The fields of a stored record (an event, a sample) that file it: ids, never redacted. */
const ID_FIELDS: ReadonlySet<string> = new Set(['id', 'kind', 'clientId', 'sessionKey', 'sessionId', 'runId', 'callId', 'turnId', 'toolCallId', 'hintIds']);
const NO_FIELDS: ReadonlySet<string> = new Set();

/**
 * A stored record (an event, a sample) redacted as redactDeep does it, but for its ids: a session
 * key such as `agent:secretary:main` reads as `secretary: main` to the KEY=value rule, and a
 * redacted one would file the record under a session that does not exist.
 */
export function redactRecord<T extends object>(record: T, count: RedactionCount = { found: 0 }): T {
  return redactFields(record, count, ID_FIELDS);
}

function redactFields<T extends object>(record: T, count: RedactionCount, keep: ReadonlySet<string>): T {
  const fields = record as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    if (keep.has(key)) continue;
    const value = fields[key];
    let redacted: unknown;
    if (typeof value === 'string' && value.length >= 4 && value !== REDACTED && keyNamesSecret(key)) {
      count.found++;
      redacted = REDACTED;
    } else {
      redacted = redactDeep(value, count);
    }
    if (redacted !== value) (copy ??= { ...fields })[key] = redacted;
  }
  return (copy ?? record) as T;
}
