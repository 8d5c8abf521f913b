// On-policy distillation from hindsight hints (OpenClaw-RL OPD): the teacher is the (frozen
// reference) model that also sees the hint; it rescores the student's own response tokens, and
// the per-token log-ratio says which tokens the hint makes more or less likely.

import { baseDefaults, lastRealUserIndex, type Advantages, type Message, type TrainDefaults } from './types.ts';

export interface OpdDefaults extends TrainDefaults {
  /** |A_t| ≤ advantageClip when set; unset by default, as in OpenClaw-RL. */
  advantageClip?: number;
}

export const defaults: Readonly<OpdDefaults> = baseDefaults;

/** How the hint is marked inside the user's message, so the teacher reads it as the user's own words. */
export const HINT_HEADER = "[user's hint / instruction]";

/**
 * The teacher context: a copy of `messages` whose last message written by the user (OpenClaw's
 * internal-context blocks are skipped: appending there would hand the hint to the wrong message)
 * ends with the hint under HINT_HEADER. With no user message at all, the hint becomes a new user
 * message at the end. The input is not modified.
 */
export function teacherContext<M extends Message>(messages: readonly M[], hint: string): (M | { role: 'user'; content: string })[] {
  const block = `${HINT_HEADER}\n${hint.trim()}`;
  const i = lastRealUserIndex(messages);
  if (i < 0) return [...messages, { role: 'user', content: block }];
  return messages.map((m, j) => (j === i ? { ...m, content: `${m.content}\n\n${block}` } : m));
}

/**
 * A_t = log π_teacher(y_t | context + hint) − log π_student(y_t | context), clipped to
 * [−clip, +clip] when `clip` is given. Both arrays score the same response tokens, so a length
 * mismatch means misaligned tokens and throws. A token where either log-prob is not finite
 * (−∞ from a filtered vocabulary, NaN) gets A_t = 0 and mask 0 rather than poisoning the batch.
 */
export function advantages(teacherLogprobs: readonly number[], studentLogprobs: readonly number[], clip?: number): Advantages {
  if (teacherLogprobs.length !== studentLogprobs.length) {
    throw new RangeError(`teacher scored ${teacherLogprobs.length} tokens, student ${studentLogprobs.length}`);
  }
  if (clip !== undefined && !(clip > 0)) throw new RangeError(`advantage clip must be positive, got ${clip}`);
  const limit = clip ?? Infinity;
  const out: Advantages = { advantages: [], mask: [] };
  teacherLogprobs.forEach((teacher, t) => {
    const gap = teacher - studentLogprobs[t]!;
    const ok = Number.isFinite(gap);
    out.advantages.push(ok ? Math.min(limit, Math.max(-limit, gap)) : 0);
    out.mask.push(ok ? 1 : 0);
  });
  return out;
}
