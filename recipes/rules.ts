// The rules judge: a vote from the evidence alone, for when no judge model is configured (or no
// vote of one was valid).
import type { Feedback, Vote } from './types.ts';
import type { Evidence } from './evidence.ts';

/** An explicit rating decides: no judge is asked. */
export function feedbackScore(feedback: Feedback | null | undefined): Vote | null {
  if (feedback?.rating === 'good') return 1;
  if (feedback?.rating === 'bad') return -1;
  return null;
}

/**
 * A judge that needs no model. Policy, first match wins:
 * 1. explicit feedback: good → +1, bad → −1;
 * 2. no next state → 0;
 * 3. the user's reply: correction or repeat → −1, approval → +1 (the user saw the outcome, so
 *    this outranks exit codes: `grep` exiting 1 for "no match" can be exactly what was wanted);
 * 4. any tool timed out, exited non-zero or reported an error → −1;
 * 5. a click, keystroke or navigation after which the screen did not change at all → −1;
 * 6. otherwise 0. Tools exiting 0 do not earn +1: a command that ran is not a command that was
 *    right, and a false +1 reinforces whatever the agent did. A changed screen does not earn +1
 *    either: without pixels a wrong page or an error dialog is a change like any other. Neutral
 *    turns are masked out.
 */
export function rulesJudge(evidence: Evidence): Vote {
  const fromFeedback = feedbackScore(evidence.feedback);
  if (fromFeedback !== null) return fromFeedback;
  if (evidence.noNextState) return 0;
  if (evidence.userReaction === 'correction' || evidence.userReaction === 'repeat') return -1;
  if (evidence.userReaction === 'approval') return 1;
  if (evidence.toolFailures.length > 0) return -1;
  if (evidence.unchangedScreens.length > 0) return -1;
  return 0;
}
