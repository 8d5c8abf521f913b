// Hint memory on the wire: what `GET /hints` returns, the block the plugin puts in front of a
// prompt, and the tokenizer both sides use (the daemon to merge near-duplicates, the plugin to rank
// hints against a request), so "similar" means the same thing on both ends.

/** Who a hint applies to: every session of an agent, or one session of it. */
export interface HintScope {
  agent: string;
  /** Set when the hint applies to this one session only. */
  sessionKey?: string;
}

/** A hint as the plugin sees it: only hints that have not faded are sent. */
export interface HintEntry {
  id: string;
  text: string;
  /** The request the hint was learned from (redacted, cut): ranked alongside the text. */
  context: string;
  scope: HintScope;
  /** Evidence for the hint against contradictions; the daemon only sends hints at or above its floor. */
  weight: number;
}

/** `GET /hints`: the revision is also the ETag, so an unchanged memory costs a 304. */
export interface HintsSnapshot {
  revision: number;
  hints: HintEntry[];
}

/** OpenClaw's default agent id: session keys outside the `agent:<id>:…` shape belong to it. */
export const DEFAULT_AGENT = 'main';

/** The agent of an OpenClaw session key (`agent:<agentId>:<rest>`). */
export function agentOf(sessionKey: string): string {
  return /^agent:([^:]+):/.exec(sessionKey)?.[1] ?? DEFAULT_AGENT;
}

export function inScope(scope: HintScope, agent: string, sessionKey: string | undefined): boolean {
  return scope.agent === agent && (scope.sessionKey === undefined || scope.sessionKey === sessionKey);
}

// --- the injected block ---

export const HINTS_BLOCK_START = '<clawrl-hints>';
export const HINTS_BLOCK_END = '</clawrl-hints>';
const HINTS_PREAMBLE = 'Lessons from earlier turns (clawrl hint memory). Follow them where they apply to this request:';

/** The block put in front of the user's prompt; each line names its hint so `/clawrl forget <id>` can find it. */
export function formatHintsBlock(hints: readonly Pick<HintEntry, 'id' | 'text'>[]): string {
  const lines = hints.map((h) => `- ${h.text.replace(/\s+/g, ' ').trim()} (hint ${h.id})`);
  return [HINTS_BLOCK_START, HINTS_PREAMBLE, ...lines, HINTS_BLOCK_END].join('\n');
}

/**
 * The text without a hints block: OpenClaw hands the prompt with the plugin's prepended context to
 * later hooks (`llm_input`) and to the model, and neither the stored user message nor a hint's
 * source context should contain hints that were injected, only what the user wrote.
 */
export function stripHintsBlock(text: string): string {
  const start = text.indexOf(HINTS_BLOCK_START);
  if (start < 0) return text;
  const end = text.indexOf(HINTS_BLOCK_END, start);
  if (end < 0) return text;
  const after = text.slice(end + HINTS_BLOCK_END.length).replace(/^\s*\n/, '');
  return text.slice(0, start) + after;
}

// --- similarity ---

/** Words too common to say what a request or a hint is about. */
const STOPWORDS = new Set(
  (
    'a an and are as at be been but by can could did do does doing done for from had has have how i if in into is it its ' +
    'just me my no not of on or our please should so than that the their them then there these they this those to too ' +
    'us was we were what when where which while who why will with would you your yours also about after again all any ' +
    'because before being both each few more most other over same some such only own very s t don now let make sure use'
  ).split(' '),
);

/**
 * A light suffix stripper ("tests", "testing", "tested" → "test"), so a hint about running the tests
 * matches a request to run a test. Deliberately crude: it only has to map a word's common forms to
 * one key, not produce real stems.
 */
function stem(word: string): string {
  if (word.length > 5 && word.endsWith('ing')) return word.slice(0, -3);
  if (word.length > 4 && word.endsWith('ed')) return word.slice(0, -2);
  if (word.length > 4 && word.endsWith('ies')) return `${word.slice(0, -3)}y`;
  if (word.length > 3 && word.endsWith('s') && !word.endsWith('ss')) return word.slice(0, -1);
  return word;
}

/** Content words of a text: lower-cased, split on anything but letters and digits, stopwords dropped, stemmed. */
export function hintTerms(text: string): string[] {
  const terms: string[] = [];
  for (const word of text.toLowerCase().split(/[^\p{L}\p{N}]+/u)) {
    if (word.length < 2 || STOPWORDS.has(word)) continue;
    terms.push(stem(word));
  }
  return terms;
}

/** Jaccard similarity of two texts' sets of content words (0 when either has none). */
export function termJaccard(a: string, b: string): number {
  const x = new Set(hintTerms(a));
  const y = new Set(hintTerms(b));
  if (x.size === 0 || y.size === 0) return 0;
  let shared = 0;
  for (const t of x) if (y.has(t)) shared++;
  return shared / (x.size + y.size - shared);
}
