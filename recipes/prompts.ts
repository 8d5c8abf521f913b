// What the judge model is asked: the turn described within character budgets, the evidence as
// lines to weigh, and the two prompts (a vote on the step; a hindsight hint).
import type { JudgeMessage, ToolResult, Turn } from './types.ts';
import { userRequest, type Evidence, type UserReaction } from './evidence.ts';

// Character budgets: OpenClaw requests carry a ~50 KB system prompt and tools can print megabytes;
// the judge needs the gist, so long texts keep their head and tail.
const BUDGET = { request: 3000, action: 4000, toolArgs: 1000, toolOutput: 2000, userReply: 2000, hint: 1000 };

/** `text` cut to `budget` characters (plus a marker), keeping head and tail; never splits a surrogate pair. */
export function clipMiddle(text: string, budget: number): string {
  if (text.length <= budget) return text;
  let head = Math.ceil(budget / 2);
  let tailStart = text.length - (budget - head);
  if (/[\uD800-\uDBFF]/.test(text[head - 1] ?? '')) head--;
  if (/[\uDC00-\uDFFF]/.test(text[tailStart] ?? '')) tailStart++;
  return `${text.slice(0, head)}\n[… ${tailStart - head} characters omitted …]\n${text.slice(tailStart)}`;
}

function describeScreen(screen: NonNullable<ToolResult['screen']>): string {
  const size = `screenshot ${screen.width}x${screen.height}`;
  if (screen.comparedTo === undefined) return `${size}, the first of this tool`;
  const share = screen.changedShare === undefined ? 'a different size' : `${(screen.changedShare * 100).toFixed(1)} % of the screen changed`;
  return `${size}, ${share} since the screenshot of [${screen.comparedTo}] (perceptual hash distance ${screen.hashDistance ?? '?'} of 64)`;
}

function describeToolResult(r: ToolResult, label: string): string[] {
  const tags = [
    typeof r.exitCode === 'number' ? `exit code ${r.exitCode}` : null,
    r.isError ? 'error' : null,
    r.timedOut ? 'timed out' : null,
    r.screen ? describeScreen(r.screen) : null,
  ].filter((t) => t !== null);
  const suffix = tags.length > 0 ? ` (${tags.join(', ')})` : '';
  return [`${label} ${r.toolName} [${r.toolCallId}]${suffix}:`, clipMiddle(r.output, BUDGET.toolOutput)];
}

function describeTurn(turn: Turn): string {
  const req = userRequest(turn);
  const { action, nextState: ns } = turn;
  const out: string[] = ['## User request', req === undefined ? '(none in context)' : clipMiddle(req, BUDGET.request)];

  out.push('', '## Agent action', action.text.trim() === '' ? '(no text)' : clipMiddle(action.text, BUDGET.action));
  for (const c of action.toolCalls) out.push(`Tool call ${c.name} [${c.id}]: ${clipMiddle(c.arguments, BUDGET.toolArgs)}`);

  out.push('', '## What happened next');
  if (ns.none) out.push('Nothing: the session ended with no reply.');
  for (const r of ns.toolResults) out.push(...describeToolResult(r, 'Tool result'));
  if (ns.screenAfter) out.push(...describeToolResult(ns.screenAfter, 'The next screenshot, from a later step,'));
  if (ns.userMessage !== undefined) out.push('User replied:', clipMiddle(ns.userMessage, BUDGET.userReply));
  if (ns.feedback?.rating) out.push(`The user rated this step ${ns.feedback.rating}.`);
  if (ns.feedback?.hint) out.push(`The user's hint: ${clipMiddle(ns.feedback.hint, BUDGET.hint)}`);
  return out.join('\n');
}

const REACTION_LINES: Record<UserReaction, string> = {
  correction: "The user's reply reads as a correction or rejection.",
  approval: "The user's reply reads as approval.",
  repeat: "The user's reply repeats the request: the action probably missed it.",
};

/** One line per cheap signal, for the judge to weigh. */
export function evidenceLines(evidence: Evidence): string[] {
  const lines = evidence.toolFailures.map((f) =>
    f.reason === 'timeout'
      ? `Tool ${f.toolName} [${f.toolCallId}] timed out.`
      : f.reason === 'exit-code'
        ? `Tool ${f.toolName} [${f.toolCallId}] exited with code ${f.exitCode}.`
        : `Tool ${f.toolName} [${f.toolCallId}] reported an error.`,
  );
  for (const u of evidence.unchangedScreens) {
    lines.push(`Tool ${u.toolName} [${u.toolCallId}] was meant to change the screen (${u.action}), but the screenshot after it [${u.screenshotCallId}] shows no change at all.`);
  }
  if (evidence.toolSuccesses > 0) lines.push(`${evidence.toolSuccesses} tool call(s) finished without error.`);
  if (evidence.userReaction) lines.push(REACTION_LINES[evidence.userReaction]);
  if (evidence.feedback?.rating) lines.push(`Explicit user feedback: ${evidence.feedback.rating}.`);
  if (evidence.noNextState) lines.push('Nothing followed the action.');
  return lines;
}

const JUDGE_SYSTEM = `You review one step taken by an AI agent. You see the user's request, the agent's action (its reply and any tool calls) and what happened next (tool results, the user's reply, or both).
Judge the action by what happened next:
- good, \\boxed{1}: the next state shows the action worked and served the request (tools succeeded with useful output, or the user is satisfied or moves on);
- bad, \\boxed{-1}: the next state shows it failed or was unwanted (errors, non-zero exit codes, timeouts, the user correcting, rejecting or repeating the request);
- neutral, \\boxed{0}: the next state does not tell.
Think briefly, then end with exactly one of \\boxed{1}, \\boxed{-1} or \\boxed{0}.`;

export function buildJudgePrompt(turn: Turn, evidence: Evidence): JudgeMessage[] {
  const lines = evidenceLines(evidence);
  const signals = lines.length > 0 ? lines.map((l) => `- ${l}`).join('\n') : '- none';
  return [
    { role: 'system', content: JUDGE_SYSTEM },
    { role: 'user', content: `${describeTurn(turn)}\n\n## Signals detected automatically\n${signals}\n\nWas the action good? End with \\boxed{1}, \\boxed{-1} or \\boxed{0}.` },
  ];
}

/** Where the hint judge writes its hint; parsing.ts reads between them. */
export const HINT_START = '[HINT_START]';
export const HINT_END = '[HINT_END]';

const HINT_SYSTEM = `You read one step taken by an AI agent and what happened next. Decide whether what happened next (the user's reply, tool output) reveals what the agent should have done instead: a hindsight hint.
- If it does, answer \\boxed{1} and write the hint in 1-3 concrete sentences addressed to the agent, between ${HINT_START} and ${HINT_END}.
- If it does not, answer \\boxed{-1} and write no hint.`;

export function buildHintPrompt(turn: Turn): JudgeMessage[] {
  return [
    { role: 'system', content: HINT_SYSTEM },
    { role: 'user', content: `${describeTurn(turn)}\n\nDoes what happened next hold a hint? Answer \\boxed{1} with ${HINT_START}…${HINT_END}, or \\boxed{-1}.` },
  ];
}
