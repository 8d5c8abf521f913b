// The plugin side of the daemon: one WebSocket per plugin, already authenticated at upgrade.
// Speaks hello/welcome, stores event batches and acks them once durable, pushes
// weights.updated. A bad frame gets an error frame; the connection and the store survive it.
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  PROTOCOL_VERSION,
  DEFAULT_MAX_FRAME_BYTES,
  ProtocolError,
  decode,
  encode,
  type ServerMessage,
  type ErrorCode,
} from '../protocol/index.ts';
import { StorageFullError, type Store } from './store.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

export const SERVER_VERSION = '0.1.0';
const HELLO_TIMEOUT_MS = 10_000;

export interface GatewayOptions {
  store: Store;
  log: Logger;
  maxFrameBytes?: number;
  weightVersion: () => string;
  /** Called after a batch stored at least one event. */
  onStored?: () => void;
  metrics?: Metrics;
}

export class Gateway {
  readonly wss: WebSocketServer;
  private readonly clients = new Set<WebSocket>();
  private readonly maxFrameBytes: number;

  constructor(private readonly opts: GatewayOptions) {
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    // ws closes a connection whose frame exceeds maxPayload; allow headroom above our own limit
    // so a merely oversized frame gets a clear error frame and the link stays up.
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.maxFrameBytes * 4 });
    this.wss.on('connection', (socket) => this.accept(socket));
  }

  get connections(): number {
    return this.clients.size;
  }

  broadcast(message: ServerMessage): void {
    const frame = encode(message);
    for (const socket of this.clients) socket.send(frame);
  }

  async close(): Promise<void> {
    for (const socket of this.wss.clients) socket.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private accept(socket: WebSocket): void {
    const { store, log } = this.opts;
    let clientId: string | undefined;
    // Batches of one connection are stored one after another so acks go out in seq order.
    let pending: Promise<void> = Promise.resolve();
    /** Set once a batch could not be stored: nothing later from this connection may be. */
    let refused = false;
    /** The client's acked seq once every batch queued so far is stored. */
    let expectedSeq = 0;
    const send = (message: ServerMessage) => {
      if (socket.readyState === socket.OPEN) socket.send(encode(message));
    };
    const refuse = (code: ErrorCode, message: string) => {
      log.warn('gateway refused a frame', { clientId, code, message });
      send({ type: 'error', code, message });
    };
    const helloTimer = setTimeout(() => {
      refuse('bad_frame', `no hello within ${HELLO_TIMEOUT_MS} ms`);
      socket.close(1008, 'no hello');
    }, HELLO_TIMEOUT_MS);

    socket.on('message', (data: RawData, isBinary: boolean) => {
      if (!isBinary) return refuse('bad_frame', 'frames must be binary msgpack, got a text frame');
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      let message;
      try {
        message = decode(bytes, this.maxFrameBytes);
      } catch (err) {
        if (err instanceof ProtocolError) return refuse(err.code, err.message);
        throw err;
      }
      if (message.type === 'hello') {
        if (message.protocol !== PROTOCOL_VERSION) {
          refuse('unsupported_protocol', `protocol ${message.protocol} is not supported; this daemon speaks ${PROTOCOL_VERSION}`);
          socket.close(1002, 'unsupported protocol');
          return;
        }
        clearTimeout(helloTimer);
        clientId = message.clientId;
        expectedSeq = store.ackedSeq(clientId);
        this.clients.add(socket);
        log.info('plugin connected', { clientId, clientVersion: message.clientVersion });
        send({
          type: 'welcome',
          protocol: PROTOCOL_VERSION,
          serverVersion: SERVER_VERSION,
          ackedSeq: store.ackedSeq(clientId),
          weightVersion: this.opts.weightVersion(),
        });
        return;
      }
      if (message.type !== 'events') return refuse('bad_frame', `a client may not send ${message.type} frames`);
      if (clientId === undefined) return refuse('bad_frame', 'events before hello');
      const id = clientId;
      const events = message.events;
      this.opts.metrics?.eventsReceived.inc(events.length);
      // Queued at once so LMDB can commit several batches together; each is stored only if the
      // one before it was (afterSeq), and the acks go out in order.
      const after = expectedSeq;
      for (const e of events) expectedSeq = Math.max(expectedSeq, e.seq);
      const stored = refused ? Promise.resolve(null) : store.appendEvents(id, events, after);
      stored.catch(() => {}); // handled in order below
      pending = pending.then(async () => {
        if (refused) return;
        try {
          const result = await stored;
          if (!result) throw new Error('an earlier batch of this connection was not stored');
          send({ type: 'ack', seq: result.ackedSeq });
          for (const sessionKey of result.refusedSessions) {
            refuse('limit_reached', `session ${sessionKey} is not stored: the daemon keeps at most ${store.limits.maxSessions} sessions (--max-sessions); remove some with \`clawrl-daemon sessions rm\``);
          }
          this.opts.metrics?.eventsAcked.inc(events.length);
          if (result.stored > 0) this.opts.onStored?.();
        } catch (err) {
          // Not acked. Later batches must not be stored ahead of these (an ack covers every seq
          // below it), so the connection closes: the plugin reconnects with backoff and resends
          // everything after the acked seq from its spool.
          const full = err instanceof StorageFullError;
          log[full ? 'warn' : 'error']('storing events failed', { clientId: id, error: (err as Error).message });
          send({ type: 'error', code: full ? 'storage_full' : 'internal', message: `storing events failed: ${(err as Error).message}` });
          refused = true;
          socket.close(1013, full ? 'storage full' : 'storing events failed');
        }
      });
    });
    socket.on('close', () => {
      clearTimeout(helloTimer);
      this.clients.delete(socket);
      if (clientId) log.info('plugin disconnected', { clientId });
    });
    socket.on('error', (err) => log.warn('plugin socket error', { clientId, error: err.message }));
  }
}
