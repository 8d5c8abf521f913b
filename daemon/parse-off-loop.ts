// Large /v1 request bodies are parsed and checked in a worker thread: JSON.parse and the checks
// of a body of megabytes take tens to hundreds of milliseconds, during which the daemon's event
// loop would ack no event and answer no other request. Small bodies parse in place (a worker's
// round trip would cost more than they do). This module is both sides: the daemon imports it,
// and the worker runs it.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ApiError, parseChatBody, type ParsedRequest } from './api.ts';
import { PendingCalls, type CallReply } from './backends/calls.ts';
import { errorMessage } from './errors.ts';
import { workerSource } from './worker-source.ts';

/** Bodies up to this many bytes are parsed on the loop: a few milliseconds at most. */
export const INLINE_PARSE_BYTES = 256 * 1024;
const ROLE = 'clawrl-chat-parse';

interface ParseRequest {
  id: number;
  body: Uint8Array;
  defaultMaxTokens: number;
}

/** What the worker answers: the parsed request, or the 4xx the body earns (an ApiError's fields). */
type Parsed = { parsed: ParsedRequest } | { refused: { status: number; message: string; type: string; param: string | null } };

interface Current {
  worker: Worker;
  pending: PendingCalls;
  /** Bodies sent and not answered yet. */
  inFlight: number;
}

export class ChatBodyParser {
  /** The worker with its calls in flight, started at the first large body. */
  private current: Current | undefined;

  /** The body as a chat request, or the ApiError it earns; parsed in the worker when it is large. */
  async parse(body: Buffer, defaultMaxTokens: number): Promise<ParsedRequest> {
    if (body.length <= INLINE_PARSE_BYTES) return parseChatBody(body, defaultMaxTokens);
    const current = this.started();
    // Held while it parses, let go while idle: an idle worker does not keep the process alive.
    if (current.inFlight++ === 0) current.worker.ref();
    const answer = await new Promise<Parsed>((resolve, reject) => {
      const id = current.pending.add({ resolve: resolve as (v: unknown) => void, reject });
      current.worker.postMessage({ id, body, defaultMaxTokens } satisfies ParseRequest);
    }).finally(() => --current.inFlight === 0 && current.worker.unref());
    if ('refused' in answer) throw new ApiError(answer.refused.status, answer.refused.message, answer.refused.type, answer.refused.param);
    return answer.parsed;
  }

  private started(): Current {
    if (this.current) return this.current;
    const current: Current = { worker: new Worker(workerSource(import.meta.url), { eval: true, workerData: ROLE, name: ROLE }), pending: new PendingCalls(), inFlight: 0 };
    current.worker.on('message', (reply: CallReply) => current.pending.route(reply));
    const fail = (err: Error) => {
      // The next large body starts a new worker; the ones in flight get a 500 naming the cause.
      if (this.current === current) this.current = undefined;
      current.pending.failAll(new Error(`the request parser's worker failed: ${err.message}`));
    };
    current.worker.on('error', fail);
    current.worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker again.
    current.worker.unref();
    this.current = current;
    return current;
  }
}

if (!isMainThread && workerData === ROLE) {
  parentPort!.on('message', ({ id, body, defaultMaxTokens }: ParseRequest) => {
    let result: Parsed;
    try {
      result = { parsed: parseChatBody(Buffer.from(body.buffer, body.byteOffset, body.byteLength), defaultMaxTokens) };
    } catch (err) {
      if (!(err instanceof ApiError)) return parentPort!.postMessage({ id, ok: false, error: errorMessage(err) } satisfies CallReply);
      result = { refused: { status: err.status, message: err.message, type: err.type, param: err.param } };
    }
    parentPort!.postMessage({ id, ok: true, result } satisfies CallReply);
  });
}
