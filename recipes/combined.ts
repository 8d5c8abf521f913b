// Combined (OpenClaw-RL's best recipe): OPD's per-token teacher−student gap where a hint was
// accepted, plus Binary RL's scalar score where the judge gave one.

import * as binaryRl from './binary-rl.ts';
import * as opd from './opd.ts';
import type { Advantages } from './types.ts';

export interface CombinedWeights {
  /** Weight of the OPD gap term. */
  wOpd: number;
  /** Weight of the Binary RL score term. */
  wRl: number;
  /** Clips the OPD gap (not the sum) to ±advantageClip when set. */
  advantageClip?: number;
}

/** OpenClaw-RL's combine run: w_opd = w_rl = 1.0 (OPENCLAW_COMBINE_W_OPD / _W_RL), same optimiser as the others. */
export const defaults: Readonly<opd.OpdDefaults & CombinedWeights> = Object.freeze({ ...opd.defaults, wOpd: 1, wRl: 1 });

export interface CombinedInput {
  /** The judge's score; 0 or absent means neutral. */
  score?: number;
  /** Present only when a hint was accepted: teacher (context + hint) and student log-probs of the response tokens. */
  teacherLogprobs?: readonly number[];
  studentLogprobs?: readonly number[];
  responseLength: number;
}

/**
 * A_t = w_opd·gap_t + w_rl·score, with gap_t = log π_teacher(y_t) − log π_student(y_t) (opd.advantages):
 * - hint and score:  w_opd·gap_t + w_rl·score
 * - hint only:       w_opd·gap_t                (score 0 or absent)
 * - score only:      w_rl·score                 (every token)
 * - neither:         null, not trainable
 * mask_t = 1 where any present term is trainable: a token whose teacher log-prob is not finite
 * still carries the score term.
 */
export function advantages(input: CombinedInput, weights: Partial<CombinedWeights> = {}): Advantages | null {
  const wOpd = weights.wOpd ?? defaults.wOpd;
  const wRl = weights.wRl ?? defaults.wRl;
  const { teacherLogprobs: teacher, studentLogprobs: student, responseLength } = input;
  if (responseLength <= 0) return null;
  if ((teacher === undefined) !== (student === undefined)) throw new TypeError('teacher and student log-probs come together');
  if (teacher !== undefined && teacher.length !== responseLength) {
    throw new RangeError(`log-probs cover ${teacher.length} tokens, response has ${responseLength}`);
  }
  const gap = teacher && student ? opd.advantages(teacher, student, weights.advantageClip ?? defaults.advantageClip) : null;
  const rl = binaryRl.advantages({ responseTokens: responseLength }, input.score ?? 0);
  if (!gap && !rl) return null;
  const out: Advantages = { advantages: [], mask: [] };
  for (let t = 0; t < responseLength; t++) {
    out.advantages.push(wOpd * (gap?.advantages[t] ?? 0) + wRl * (rl?.advantages[t] ?? 0));
    out.mask.push(Math.max(gap?.mask[t] ?? 0, rl?.mask[t] ?? 0));
  }
  return out;
}
