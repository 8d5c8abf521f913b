// Byte-level tokenizer and chat template of the embedded model.
//
// Ids 0..255 are the UTF-8 bytes; the ids above are markers that only the template inserts (text
// that merely spells "<|user|>" stays bytes, so message content cannot forge a turn).
//
// Template:
//   <|system|>SYSTEM[\n\n# Tools ...one JSON line per tool]<|end|>
//   <|user|>TEXT<|end|>
//   <|assistant|>TEXT<tool_call>{"name":N,"arguments":ARGS}</tool_call><|end|>
//   <|tool|>RESULT<|end|>
//   <|assistant|>          ← the prompt ends here; the model writes the reply

import type { ChatMessage, ToolCall, ToolSpec } from '../types.ts';

export const SPECIAL = {
  system: 256,
  user: 257,
  assistant: 258,
  tool: 259,
  end: 260,
  toolCallOpen: 261,
  toolCallClose: 262,
} as const;

export const VOCAB_SIZE = 263;

const SPECIAL_TEXT: Record<number, string> = {
  [SPECIAL.system]: '<|system|>',
  [SPECIAL.user]: '<|user|>',
  [SPECIAL.assistant]: '<|assistant|>',
  [SPECIAL.tool]: '<|tool|>',
  [SPECIAL.end]: '<|end|>',
  [SPECIAL.toolCallOpen]: '<tool_call>',
  [SPECIAL.toolCallClose]: '</tool_call>',
};

const ROLE_TOKEN: Record<ChatMessage['role'], number> = {
  system: SPECIAL.system,
  user: SPECIAL.user,
  assistant: SPECIAL.assistant,
  tool: SPECIAL.tool,
};

/** Tokens that end the assistant's turn when sampled: the end marker and any turn start. */
export function endsTurn(token: number): boolean {
  return token >= SPECIAL.system && token <= SPECIAL.end;
}

const utf8 = new TextEncoder();

function pushText(out: number[], text: string): void {
  const bytes = utf8.encode(text);
  for (let i = 0; i < bytes.length; i++) out.push(bytes[i]);
}

/**
 * Decodes tokens one at a time; each push returns the text that token completes (a multi-byte
 * character appears with its last byte, so the pieces concatenate to the whole text).
 */
export class StreamDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly byte = new Uint8Array(1);

  push(token: number): string {
    if (token < 256) {
      this.byte[0] = token;
      return this.decoder.decode(this.byte, { stream: true });
    }
    return this.flush() + (SPECIAL_TEXT[token] ?? '');
  }

  /** Ends any incomplete character (as U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}

export function decode(tokens: number[]): string {
  const d = new StreamDecoder();
  let text = '';
  for (const t of tokens) text += d.push(t);
  return text + d.flush();
}

/** Bytes only, no markers: the tokens of plain text. */
export function encodeText(text: string): number[] {
  const out: number[] = [];
  pushText(out, text);
  return out;
}

/** How the model writes a call: arguments inline when they are JSON (as the model would), else as a string. */
function renderToolCall(call: ToolCall): string {
  let args = call.arguments;
  try {
    JSON.parse(args);
  } catch {
    args = JSON.stringify(args);
  }
  return `{"name":${JSON.stringify(call.name)},"arguments":${args}}`;
}

function renderTools(tools: ToolSpec[]): string {
  const lines = tools.map((t) => JSON.stringify({ name: t.name, description: t.description, parameters: t.parameters }));
  return (
    '\n\n# Tools\nTo call a tool, write <tool_call>{"name": NAME, "arguments": {...}}</tool_call>.\n' + lines.join('\n')
  );
}

export interface EncodedPrompt {
  tokens: number[];
  /** True when the prompt was longer than maxTokens and was cut. */
  truncated: boolean;
}

/** A run of the prompt: one special token, or text's UTF-8 bytes (one token each). */
type Piece = number | Uint8Array;
const pieceLength = (p: Piece) => (typeof p === 'number' ? 1 : p.length);

/** Tokens [from, to) of the pieces, without materialising the rest. */
function tokensOf(pieces: Piece[], from: number, to: number, out: number[]): void {
  let at = 0;
  for (const p of pieces) {
    const length = pieceLength(p);
    const [start, end] = [Math.max(from, at), Math.min(to, at + length)];
    if (start < end) {
      if (typeof p === 'number') out.push(p);
      else for (let i = start - at; i < end - at; i++) out.push(p[i]!);
    }
    at += length;
    if (at >= to) return;
  }
}

/**
 * Renders the conversation (tools described in the system turn) ending with the assistant marker.
 * A prompt over `maxTokens` keeps the first quarter of the budget from the start of the prompt
 * (the head of the system prompt: who the agent is) and fills the rest from the end (the latest
 * turns and the assistant marker); the middle is dropped. Only the kept tokens are made: a 4 MiB
 * tool output cut to a 192-token prompt costs its UTF-8 encoding, not 4 million array pushes.
 */
export function encodeChat(messages: ChatMessage[], tools: ToolSpec[] | undefined, maxTokens: number): EncodedPrompt {
  const toolText = tools && tools.length > 0 ? renderTools(tools) : '';
  const turns = messages.slice();
  if (toolText && !turns.some((m) => m.role === 'system')) turns.unshift({ role: 'system', content: '' });
  const pieces: Piece[] = [];
  let systemHeadPending = toolText !== '';
  for (const m of turns) {
    pieces.push(ROLE_TOKEN[m.role], utf8.encode(m.content));
    if (m.role === 'system' && systemHeadPending) {
      pieces.push(utf8.encode(toolText));
      systemHeadPending = false;
    }
    for (const call of m.role === 'assistant' ? (m.toolCalls ?? []) : []) {
      pieces.push(SPECIAL.toolCallOpen, utf8.encode(renderToolCall(call)), SPECIAL.toolCallClose);
    }
    pieces.push(SPECIAL.end);
  }
  pieces.push(SPECIAL.assistant);
  const total = pieces.reduce<number>((sum, p) => sum + pieceLength(p), 0);
  const tokens: number[] = [];
  if (total <= maxTokens) {
    tokensOf(pieces, 0, total, tokens);
    return { tokens, truncated: false };
  }
  const head = Math.floor(maxTokens / 4);
  tokensOf(pieces, 0, head, tokens);
  tokensOf(pieces, total - (maxTokens - head), total, tokens);
  return { tokens, truncated: true };
}

export interface ParsedReply {
  /** The reply without its tool-call blocks. */
  content: string;
  toolCalls: ToolCall[];
}

const TOOL_CALL_BLOCK = /<tool_call>([\s\S]*?)<\/tool_call>/g;

/**
 * Pulls `<tool_call>{"name": .., "arguments": ..}</tool_call>` blocks out of generated text.
 * A block that is not such JSON stays in the content as text.
 */
export function parseToolCalls(text: string, newId: () => string): ParsedReply {
  const toolCalls: ToolCall[] = [];
  const content = text.replace(TOOL_CALL_BLOCK, (block, body: string) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return block;
    }
    if (typeof parsed !== 'object' || parsed === null) return block;
    const { name, arguments: args } = parsed as { name?: unknown; arguments?: unknown };
    if (typeof name !== 'string' || name === '') return block;
    const argText = typeof args === 'string' ? args : JSON.stringify(args ?? {});
    toolCalls.push({ id: newId(), name, arguments: argText });
    return '';
  });
  return { content: toolCalls.length > 0 ? content.trim() : content, toolCalls };
}
