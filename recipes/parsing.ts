// Reading the judge's answers: a boxed vote, a hint between markers, the hint to keep among m,
// and the majority of m votes.
import type { Vote } from './types.ts';
import { HINT_END, HINT_START } from './prompts.ts';

const BOXED = '\\boxed';
/** Longest box body considered; real answers are a few characters. */
const MAX_BOX_BODY = 64;
const BOX_WORDS: Record<string, Vote> = {
  '1': 1, '+1': 1, good: 1, '-1': -1, bad: -1, '0': 0, '+0': 0, '-0': 0, neutral: 0,
};

/**
 * The vote in a judge's answer: the LAST `\boxed{…}` decides (a judge that reconsiders ends with
 * its final answer, and OpenClaw-RL also takes the last). If that last box is malformed the answer
 * is invalid (null): earlier boxes are drafts, not fallbacks. Accepted bodies: 1, +1, -1 (also
 * with a Unicode minus), 0, good, bad, neutral, case-insensitive, ignoring whitespace, `$` and
 * LaTeX wrappers such as `\text{…}`. Anything else (empty, 2, 0.5, words) is null.
 * Linear time: lastIndexOf plus a bounded brace scan, no backtracking regex over the input.
 */
export function parseVote(text: string): Vote | null {
  const at = text.lastIndexOf(BOXED);
  if (at < 0) return null;
  let i = at + BOXED.length;
  while (text[i] === ' ') i++;
  if (text[i] !== '{') return null;
  const open = i;
  let depth = 0;
  for (; i < text.length && i - open <= MAX_BOX_BODY; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) break;
  }
  if (depth !== 0) return null;
  const body = text
    .slice(open + 1, i)
    .replace(/\\[a-zA-Z]+/g, '')
    .replace(/[{}\s$]/g, '')
    .replace(/\u2212/g, '-')
    .toLowerCase();
  return BOX_WORDS[body] ?? null;
}

export interface ParsedHint {
  vote: 1 | -1 | null;
  hint: string | null;
}

/** The hint judge's answer: its vote (only ±1 count; 0 is invalid here) and the last hint block. */
export function parseHint(text: string): ParsedHint {
  const v = parseVote(text);
  const end = text.lastIndexOf(HINT_END);
  const start = end < 0 ? -1 : text.lastIndexOf(HINT_START, end);
  const hint = start < 0 ? '' : text.slice(start + HINT_START.length, end).trim();
  return { vote: v === 0 ? null : v, hint: hint === '' ? null : hint };
}

/** Hints longer than this are not the 1–3 sentences asked for; they would also win "longest". */
const MAX_HINT_CHARS = 1000;
const MIN_HINT_CHARS = 10;

/**
 * The hint to distil from: among candidates with a +1 vote and a hint of more than 10 and at most
 * 1,000 characters, the longest (OpenClaw-RL picks the longest: more specific hints carry more
 * information); the first on a tie. Null if none qualifies.
 */
export function chooseHint(candidates: readonly ParsedHint[]): string | null {
  let best: string | null = null;
  for (const c of candidates) {
    const h = c.hint;
    if (c.vote !== 1 || h === null || h.length <= MIN_HINT_CHARS || h.length > MAX_HINT_CHARS) continue;
    if (best === null || h.length > best.length) best = h;
  }
  return best;
}

/** Plurality of the valid (non-null) votes; a tie for first place, or no valid vote, gives 0. */
export function majority(votes: readonly (Vote | null)[]): { score: Vote; valid: number } {
  const counts = new Map<Vote, number>([[1, 0], [-1, 0], [0, 0]]);
  let valid = 0;
  for (const v of votes) {
    if (v === null) continue;
    counts.set(v, counts.get(v)! + 1);
    valid++;
  }
  const top = Math.max(...counts.values());
  const leaders = [...counts].filter(([, n]) => n === top);
  return { score: valid > 0 && leaders.length === 1 ? leaders[0]![0] : 0, valid };
}
