// The synthetic corpus a hint-reading base is pretrained on (pretrain.ts): chats whose reply
// follows every instruction in the user's message, the way OpenClaw-RL's OPD teacher is assumed
// to (the frozen base, reading a hint, knows what the reply should have been). An instruction
// arrives as a hindsight hint under OPD's `[user's hint / instruction]` header (recipes/opd.ts
// builds that teacher context), or as a hint-memory block in front of the request (the plugin's
// formatHintsBlock); with none, the reply varies freely in every property an instruction can
// fix. Replies are words from a small vocabulary, so even a byte-level model answers in text.
//
// Everything is drawn from one seeded Rng: the same seed always yields the same corpus.

import { formatHintsBlock } from '../../../protocol/index.ts';
import { HINT_HEADER } from '../../../recipes/opd.ts';
import { Rng } from './model.ts';
import { SPECIAL, encodeText } from './tokenizer.ts';

/** A property an instruction can fix. Each is checkable on the reply text alone. */
export type Rule = 'letter' | 'digit' | 'greeting' | 'plain' | 'long' | 'short' | 'polite';

/** Markdown marks: a reply under the 'plain' rule contains none of them. */
export const MARKDOWN_MARKS = '*#`_~>';
export const GREETINGS = ['Hello', 'Hi', 'Hey'];
/** A 'long' reply has at least this many characters, a 'short' one at most SHORT_MAX. */
export const LONG_MIN = 40;
export const SHORT_MAX = 14;

/** Does `reply` keep `rule`? The corpus's replies keep the rules of their instructions by construction. */
export function follows(rule: Rule, reply: string): boolean {
  switch (rule) {
    case 'letter':
      return /^[A-Za-z]/.test(reply);
    case 'digit':
      return /^[0-9]/.test(reply);
    case 'greeting':
      return GREETINGS.some((g) => new RegExp(`^${g}\\b`).test(reply));
    case 'plain':
      return ![...MARKDOWN_MARKS].some((m) => reply.includes(m));
    case 'long':
      return reply.length >= LONG_MIN;
    case 'short':
      return reply.trim().length > 0 && reply.length <= SHORT_MAX;
    case 'polite':
      // A word of its own, also inside markdown (`_please_`), where \b would not see it.
      return /(^|[^a-z])please([^a-z]|$)/i.test(reply);
  }
}

/**
 * How people phrase each instruction. The pretraining corpus draws from all of them; the
 * simulated users (bench/simulated-user.ts) write one of these when they hint.
 */
export const INSTRUCTIONS: Record<Rule, string[]> = {
  letter: [
    'Start your reply with a letter of the alphabet (A-Z or a-z), never a digit, symbol or space.',
    'Begin the answer with a letter, not a number or a symbol.',
    'The first character must be a letter.',
  ],
  digit: ['Start your reply with a number.', 'Begin the answer with a digit.'],
  greeting: [
    'Greet me first: start the reply with Hello, Hi or Hey.',
    'Say hello before anything else.',
    'Open with a greeting word like Hi.',
  ],
  plain: [
    'No markdown please: plain text only, without * # ` _ or > marks.',
    'Write plain words, no formatting symbols.',
    'Do not use markdown marks like asterisks or hashes.',
  ],
  long: [
    'Give longer answers: a full sentence of at least 40 characters.',
    'Your replies are too short, write more.',
    'Answer at length, several words at least.',
  ],
  short: ['Keep it short: a few words at most.', 'Be brief.'],
  polite: ['Always say please in the reply.', 'Use the word please when you answer.'],
};

/** Rules that contradict each other never appear in one chat. */
const CONFLICTS: [Rule, Rule][] = [
  ['letter', 'digit'],
  ['greeting', 'digit'],
  ['long', 'short'],
  ['polite', 'short'],
];

const WORDS = (
  'the a it is was this that with for and but so not all one new old good best more time way day work file code test run build page note plan list ' +
  'idea task step data text line bug fix part next last open done sure here there now then soon today maybe yes well right ok thing answer result ' +
  'river garden city music coffee paper letter window story color light market train cloud stone forest'
).split(' ');
const TOPICS = 'cats rivers gardens music coffee trains clouds forests markets windows stones colors paper letters cities the weather my plan the code a bug the test'.split(' ');
const ASKS = ['write a message about', 'answer my question about', 'tell me something about', 'give me a note about', 'say a few words about', 'reply about'];
const CHATTY = ['hi', 'hello there', 'what now?', 'ok go', 'say something', 'pick one', 'any news?', 'your turn'];
const SYMBOL_STARTS = ['(', '"', '...', '- ', '[', ' ', '!', '?'];
const MARK_STARTS = ['# ', '* ', '> ', '**', '`', '_'];

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng.next() * xs.length)]!;

/** A request a user might send: mostly "write a message about X"-like tasks, sometimes chat. */
export function randomPrompt(rng: Rng): string {
  if (rng.next() < 0.25) return pick(rng, CHATTY);
  const prompt = `${pick(rng, ASKS)} ${pick(rng, TOPICS)}`;
  return rng.next() < 0.5 ? prompt : prompt[0]!.toUpperCase() + prompt.slice(1);
}

function words(rng: Rng, n: number): string {
  return Array.from({ length: n }, () => pick(rng, WORDS)).join(' ');
}

/**
 * A reply that keeps every rule in `rules` and leaves every other property to chance: how it
 * starts (a letter, a greeting, a digit, a markdown mark or another symbol), its length, the
 * markdown inside it and whether it says please.
 */
export function randomReply(rng: Rng, rules: ReadonlySet<Rule>): string {
  const long = rules.has('long');
  const short = rules.has('short');
  // Without a length rule the length is free: 1–9 words (about 4–50 characters).
  const n = long ? 8 + Math.floor(rng.next() * 4) : short ? 1 + Math.floor(rng.next() * 2) : 1 + Math.floor(rng.next() * 9);
  let body = words(rng, n);
  const polite = rules.has('polite') || (!short && rng.next() < 0.1);
  if (polite) body = rng.next() < 0.5 ? `please ${body}` : `${body} please`;
  const plain = rules.has('plain');
  if (!plain && !short && n > 1 && rng.next() < 0.5) {
    // Markdown inside: **bold**, `code` or _emphasis_ around one word, never the first (the
    // start is drawn below, and a start rule must hold).
    const ws = body.split(' ');
    const i = 1 + Math.floor(rng.next() * (ws.length - 1));
    const [open, close] = pick(rng, [['**', '**'], ['`', '`'], ['_', '_']] as const);
    ws[i] = `${open}${ws[i]}${close}`;
    body = ws.join(' ');
  }
  const capital = (s: string) => s[0]!.toUpperCase() + s.slice(1);
  let start: 'letter' | 'greeting' | 'digit' | 'mark' | 'symbol';
  if (rules.has('greeting')) start = 'greeting';
  else if (rules.has('letter')) start = rng.next() < 0.15 ? 'greeting' : 'letter';
  else if (rules.has('digit')) start = 'digit';
  else {
    // Free: a letter a quarter of the time, a greeting rarely, the rest digits and symbols.
    const u = rng.next();
    start = u < 0.22 ? 'letter' : u < 0.28 ? 'greeting' : u < 0.5 ? 'digit' : u < 0.75 ? (plain ? 'symbol' : 'mark') : 'symbol';
  }
  let reply: string;
  if (start === 'letter') reply = rng.next() < 0.5 ? capital(body) : body;
  else if (start === 'greeting') reply = `${pick(rng, GREETINGS)}${rng.next() < 0.5 ? ',' : '!'} ${body}`;
  else if (start === 'digit') reply = `${1 + Math.floor(rng.next() * 9)}${rng.next() < 0.5 ? '.' : ''} ${body}`;
  else if (start === 'mark') reply = `${pick(rng, MARK_STARTS)}${body}`;
  else reply = `${pick(rng, SYMBOL_STARTS.filter((s) => !(plain && [...MARKDOWN_MARKS].some((m) => s.includes(m)))))}${body}`;
  if (rng.next() < 0.3 && !short) reply += pick(rng, ['.', '!', '?']);
  if (short && reply.length > SHORT_MAX) reply = reply.slice(0, SHORT_MAX).trimEnd();
  while (long && reply.length < LONG_MIN) reply += ` ${pick(rng, WORDS)}`;
  return reply;
}

/** One pretraining chat: the tokens, and from which index on they are the reply (the loss's part). */
export interface CorpusExample {
  tokens: number[];
  replyStart: number;
  rules: Rule[];
}

/** How an instruction reaches the model: none, a hindsight hint (OPD's teacher), or hint memory. */
export type InstructionForm = 'none' | 'hint' | 'memory';

/** The user's message carrying `instructions` in `form`. */
export function userMessage(prompt: string, instructions: string[], form: InstructionForm, hintIds: string[] = []): string {
  if (form === 'none' || instructions.length === 0) return prompt;
  if (form === 'hint') return `${prompt}\n\n${HINT_HEADER}\n${instructions.join(' ')}`;
  return `${formatHintsBlock(instructions.map((text, i) => ({ id: hintIds[i] ?? 'h0', text })))}\n\n${prompt}`;
}

/** A chat of the corpus: 30 % without an instruction, the rest with one or two in either form. */
export function corpusExample(rng: Rng): CorpusExample {
  const u = rng.next();
  const form: InstructionForm = u < 0.3 ? 'none' : u < 0.8 ? 'hint' : 'memory';
  const all = Object.keys(INSTRUCTIONS) as Rule[];
  const rules: Rule[] = [];
  if (form !== 'none') {
    rules.push(pick(rng, all));
    const second = pick(rng, all);
    if (rng.next() < 0.25 && second !== rules[0] && !CONFLICTS.some(([a, b]) => (a === rules[0] && b === second) || (b === rules[0] && a === second))) rules.push(second);
  }
  const instructions = rules.map((r) => pick(rng, INSTRUCTIONS[r]));
  const hintIds = rules.map(() => `h${Math.floor(rng.next() * 0xffffffff).toString(16).padStart(8, '0')}`);
  const user = userMessage(randomPrompt(rng), instructions, form, hintIds);
  const reply = randomReply(rng, new Set(rules));
  // The chat template of tokenizer.ts's encodeChat, for a single user message.
  const tokens = [SPECIAL.user, ...encodeText(user), SPECIAL.end, SPECIAL.assistant];
  const replyStart = tokens.length;
  tokens.push(...encodeText(reply), SPECIAL.end);
  return { tokens, replyStart, rules };
}
