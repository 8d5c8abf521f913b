// The recipe registry: what the daemon needs to compose any recipe generically. A recipe says
// what its advantages are computed from: the judge's score (`needsScore`), a hindsight hint
// (`needsHint`), and a teacher that scores the response with an accepted hint (`teacher`: the
// context it scores under). The daemon's scoring loop gathers exactly those, then asks
// `advantages`; null means the turn is not trainable under this recipe.

import * as binaryRl from './binary-rl.ts';
import * as combined from './combined.ts';
import * as opd from './opd.ts';
import type { Advantages, TrainDefaults } from './types.ts';

export type RecipeInput = combined.CombinedInput;

/** Every option a recipe may read; each recipe ignores the ones it has no use for. */
export type RecipeDefaults = TrainDefaults & Partial<combined.CombinedWeights>;

export interface Recipe {
  name: RecipeName;
  defaults: Readonly<RecipeDefaults>;
  /** Run the judge's votes for a score. */
  needsScore: boolean;
  /** Run hint extraction. */
  needsHint: boolean;
  /**
   * With an accepted hint: the context under which the frozen reference policy rescoring the
   * response gives the teacher's log-probs (OPD). Absent: the recipe has no teacher.
   */
  teacher?: typeof opd.teacherContext;
  advantages(input: RecipeInput, opts?: Partial<RecipeDefaults>): Advantages | null;
}

export type RecipeName = 'binary-rl' | 'opd' | 'combined';

export const recipes: Readonly<Record<RecipeName, Recipe>> = Object.freeze({
  'binary-rl': {
    name: 'binary-rl',
    defaults: binaryRl.defaults,
    needsScore: true,
    needsHint: false,
    advantages: (input) => binaryRl.advantages({ responseTokens: input.responseLength }, input.score ?? 0),
  },
  opd: {
    name: 'opd',
    defaults: opd.defaults,
    needsScore: false,
    needsHint: true,
    teacher: opd.teacherContext,
    // No accepted hint → no teacher log-probs → no OPD sample. The score is not used.
    advantages: (input, opts) => combined.advantages({ ...input, score: 0 }, { wOpd: 1, wRl: 0, advantageClip: opts?.advantageClip }),
  },
  combined: {
    name: 'combined',
    defaults: combined.defaults,
    needsScore: true,
    needsHint: true,
    teacher: opd.teacherContext,
    advantages: (input, opts) => combined.advantages(input, opts),
  },
});

export function isRecipeName(name: string): name is RecipeName {
  return Object.hasOwn(recipes, name);
}

export type { Advantages, Turn, Vote, Complete } from './types.ts';
export { judgeTurn, extractHint } from './judge.ts';
export { computeEvidence } from './evidence.ts';
export { rulesJudge } from './rules.ts';
export { createLimiter } from './limiter.ts';
