// Large /v1 request bodies are parsed and checked in a worker thread (off-loop.ts): JSON.parse and
// the checks of a body of megabytes take tens to hundreds of milliseconds, during which the
// daemon's event loop would ack no event and answer no other request. Small bodies parse in place
// (a worker's round trip would cost more than they do).
import { ApiError, parseChatBody, type ParsedRequest } from './api.ts';
import { OffLoop, serveOffLoop } from './off-loop.ts';

/** Bodies up to this many bytes are parsed on the loop: a few milliseconds at most. */
export const INLINE_PARSE_BYTES = 256 * 1024;
const ROLE = 'clawrl-chat-parse';

interface ParseRequest {
  body: Uint8Array;
  defaultMaxTokens: number;
}

/** What the worker answers: the parsed request, or the 4xx the body earns (an ApiError's fields). */
type Parsed = { parsed: ParsedRequest } | { refused: { status: number; message: string; type: string; param: string | null } };

export class ChatBodyParser {
  private readonly worker = new OffLoop<ParseRequest, Parsed>(ROLE, import.meta.url, 'the request parser');

  /** The body as a chat request, or the ApiError it earns; parsed in the worker when it is large. */
  async parse(body: Buffer, defaultMaxTokens: number): Promise<ParsedRequest> {
    if (body.length <= INLINE_PARSE_BYTES) return parseChatBody(body, defaultMaxTokens);
    const answer = await this.worker.call({ body, defaultMaxTokens });
    if ('refused' in answer) throw new ApiError(answer.refused.status, answer.refused.message, answer.refused.type, answer.refused.param);
    return answer.parsed;
  }
}

serveOffLoop<ParseRequest, Parsed>(ROLE, ({ body, defaultMaxTokens }) => {
  try {
    return { parsed: parseChatBody(Buffer.from(body.buffer, body.byteOffset, body.byteLength), defaultMaxTokens) };
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    return { refused: { status: err.status, message: err.message, type: err.type, param: err.param } };
  }
});
