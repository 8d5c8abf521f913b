// Requests in flight to a backend's worker (a thread or a process), matched to replies by id.
// Shared by the embedded and torch backends, which speak the same reply shapes.
import type { GenerateChunk } from './types.ts';

/** What a worker answers: streamed chunks of a generation, then one result or error. */
export type CallReply = { id: number; chunk: GenerateChunk } | { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };

interface Call {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onChunk?: (c: GenerateChunk) => void;
}

export class PendingCalls {
  private nextId = 1;
  private readonly calls = new Map<number, Call>();

  /** Registers a call and returns the id to send with it. */
  add(call: Call): number {
    const id = this.nextId++;
    this.calls.set(id, call);
    return id;
  }

  /** Forgets a call the caller gave up on; a late reply to it is ignored. */
  drop(id: number): void {
    this.calls.delete(id);
  }

  route(reply: CallReply): void {
    const call = this.calls.get(reply.id);
    if (!call) return;
    if ('chunk' in reply) {
      call.onChunk?.(reply.chunk);
      return;
    }
    this.calls.delete(reply.id);
    if (reply.ok) call.resolve(reply.result);
    else call.reject(new Error(reply.error));
  }

  /** Rejects every call in flight (the worker died). */
  failAll(err: Error): void {
    for (const call of this.calls.values()) call.reject(err);
    this.calls.clear();
  }
}
