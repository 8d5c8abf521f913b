// Work on megabytes (parsing a large request body, redacting a large sample) done in a worker
// thread, so that the daemon's event loop goes on acking events and answering requests. One
// worker per kind of work, started at its first call, held only while calls are in flight (an
// idle worker does not keep the process alive), and started again after a failure, whose calls
// in flight are rejected naming it. A module that offers such work calls `serveOffLoop` at its top
// level (the worker side) and makes an `OffLoop` with its own URL (the daemon side).
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { PendingCalls, type CallReply } from './backends/calls.ts';
import { errorMessage } from './errors.ts';
import { workerSource } from './worker-source.ts';

interface Current {
  worker: Worker;
  pending: PendingCalls;
  /** Calls sent and not answered yet. */
  inFlight: number;
}

export class OffLoop<Request, Result> {
  private current: Current | undefined;

  /**
   * @param role names the work: the worker answers only this role's calls.
   * @param moduleUrl the module that calls `serveOffLoop(role, …)`: the worker loads it.
   * @param what the work in an error's words, e.g. "the request parser".
   */
  constructor(
    private readonly role: string,
    private readonly moduleUrl: string,
    private readonly what: string,
  ) {}

  call(request: Request): Promise<Result> {
    const current = this.started();
    if (current.inFlight++ === 0) current.worker.ref();
    return new Promise<Result>((resolve, reject) => {
      const id = current.pending.add({ resolve: resolve as (v: unknown) => void, reject });
      current.worker.postMessage({ id, request });
    }).finally(() => --current.inFlight === 0 && current.worker.unref());
  }

  private started(): Current {
    if (this.current) return this.current;
    const worker = new Worker(workerSource(this.moduleUrl), { eval: true, workerData: this.role, name: this.role });
    const current: Current = { worker, pending: new PendingCalls(), inFlight: 0 };
    worker.on('message', (reply: CallReply) => current.pending.route(reply));
    const fail = (err: Error) => {
      // The next call starts a new worker; the ones in flight are rejected naming the cause.
      if (this.current === current) this.current = undefined;
      current.pending.failAll(new Error(`${this.what}'s worker failed: ${err.message}`));
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker again.
    worker.unref();
    this.current = current;
    return current;
  }
}

/** In a worker started for `role`: answers each call with `handle`'s result, or its error's message. */
export function serveOffLoop<Request, Result>(role: string, handle: (request: Request) => Result): void {
  if (isMainThread || workerData !== role) return;
  parentPort!.on('message', ({ id, request }: { id: number; request: Request }) => {
    let reply: CallReply;
    try {
      reply = { id, ok: true, result: handle(request) };
    } catch (err) {
      reply = { id, ok: false, error: errorMessage(err) };
    }
    parentPort!.postMessage(reply);
  });
}
