// Binary RL (GRPO-style, OpenClaw-RL): a judge scores the turn +1 / −1 / 0 and every response
// token gets that score as its advantage. There is no group baseline: one turn, one sample.

import { baseDefaults, type Advantages, type NextState, type TrainDefaults } from './types.ts';

/** OpenClaw-RL's settings (see baseDefaults); the KL term is off (klCoef 0). */
export const defaults: Readonly<TrainDefaults> = baseDefaults;

/**
 * A_t = score for t = 0 … T−1 (T = response tokens), mask all ones.
 * Null (not trainable) when the score is 0 (neutral: nothing to push towards), when nothing
 * followed the action, or when the response is empty; the daemon drops such turns rather than
 * spending a forward pass on an all-masked example.
 */
export function advantages(turn: { responseTokens: number; nextState?: NextState }, score: number): Advantages | null {
  if (score === 0 || !Number.isFinite(score) || turn.nextState?.none || turn.responseTokens <= 0) return null;
  return {
    advantages: new Array<number>(turn.responseTokens).fill(score),
    mask: new Array<number>(turn.responseTokens).fill(1),
  };
}
