// The plugin side of the daemon: one WebSocket per plugin, already authenticated at upgrade.
// Speaks hello/welcome, stores event batches and acks them once durable, pushes
// weights.updated. A bad frame gets an error frame and the store survives it; a bad event is
// refused alone (named in the ack, never stored) and the rest of its batch is stored; a frame that
// cannot be read at all also closes the connection, since it may have held events that a later
// ack would otherwise claim durable.
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import {
  PROTOCOL_VERSION,
  DEFAULT_MAX_FRAME_BYTES,
  ProtocolError,
  decode,
  encode,
  partitionEvents,
  type Event,
  type RejectedEvent,
  type ServerMessage,
  type ErrorCode,
} from '../protocol/index.ts';
import { StorageFullError, type AppendResult, type ClientAck, type Store } from './store.ts';
import { throttled, type Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

export const SERVER_VERSION = '0.1.0';

const errorMessage = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const HELLO_TIMEOUT_MS = 10_000;
/** Batches one connection may have queued to the store before the daemon stops reading it. */
const MAX_IN_FLIGHT_BATCHES = 4;

export interface GatewayOptions {
  store: Store;
  log: Logger;
  maxFrameBytes?: number;
  weightVersion: () => string;
  /** Called after a batch stored at least one event. */
  onStored?: () => void;
  metrics?: Metrics;
}

/**
 * The highest seq of a batch above `after`, with its event's `at` (every event here has an
 * integer seq; a refused one may lack `at`): what the batch acks through.
 */
function highestEvent(events: readonly unknown[], after: number): ClientAck {
  let high: ClientAck = { seq: after };
  for (const e of events as { seq: number; at?: unknown }[]) {
    if (e.seq > high.seq) high = { seq: e.seq, ...(typeof e.at === 'number' && { at: e.at }) };
  }
  return high;
}

export class Gateway {
  readonly wss: WebSocketServer;
  private readonly clients = new Set<WebSocket>();
  private readonly maxFrameBytes: number;
  /** For refusals: a client can send bad frames as fast as it likes. */
  private readonly refusals: Logger;

  constructor(private readonly opts: GatewayOptions) {
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.refusals = throttled(opts.log);
    // ws closes a connection whose frame exceeds maxPayload; allow headroom above our own limit
    // so a merely oversized frame gets a clear error frame and the link stays up.
    // One message per turn of the event loop (allowSynchronousEvents: false): ws otherwise emits
    // every frame of a socket read in one go, and a 64 KiB read of a flooder's tiny frames is
    // thousands of them, processed before any other connection or request is looked at (pausing
    // the socket stops only the next read).
    this.wss = new WebSocketServer({ noServer: true, maxPayload: this.maxFrameBytes * 4, allowSynchronousEvents: false });
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
    /** What this client's install adds to its session keys (installs.ts). */
    let keySuffix = '';
    // Batches of one connection are stored one after another so acks go out in seq order.
    let pending: Promise<void> = Promise.resolve();
    /** Set once a batch could not be stored: nothing later from this connection may be. */
    let refused = false;
    /** The client's acked seq once every batch queued so far is stored. */
    let expectedSeq = 0;
    /** Batches of this connection queued to the store and not acked yet. */
    let inFlight = 0;
    const send = (message: ServerMessage) => {
      if (socket.readyState === socket.OPEN) socket.send(encode(message));
    };
    const refuse = (code: ErrorCode, message: string) => {
      this.refusals.warn('gateway refused a frame', { clientId, code, message });
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
        message = decode(bytes, this.maxFrameBytes, { events: 'seq' });
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        refuse(err.code, err.message);
        // The frame may have held events, and acking later ones would claim these durable too:
        // the client reconnects and resends everything after its acked seq.
        if (clientId !== undefined) unreadable(socket);
        return;
      }
      if (message.type === 'hello') {
        if (message.protocol !== PROTOCOL_VERSION) {
          refuse('unsupported_protocol', `protocol ${message.protocol} is not supported; this daemon speaks ${PROTOCOL_VERSION}`);
          socket.close(1002, 'unsupported protocol');
          return;
        }
        clearTimeout(helloTimer);
        clientId = message.clientId;
        keySuffix = store.installSuffix(message.installId);
        const acked = store.clientAck(clientId);
        expectedSeq = acked.seq;
        this.clients.add(socket);
        log.info('plugin connected', { clientId, clientVersion: message.clientVersion, ...(keySuffix && { sessionKeySuffix: keySuffix }) });
        send({
          type: 'welcome',
          protocol: PROTOCOL_VERSION,
          serverVersion: SERVER_VERSION,
          ackedSeq: acked.seq,
          ...(acked.at !== undefined && { ackedAt: acked.at }),
          weightVersion: this.opts.weightVersion(),
        });
        return;
      }
      if (message.type !== 'events') return refuse('bad_frame', `a client may not send ${message.type} frames`);
      if (clientId === undefined) return refuse('bad_frame', 'events before hello');
      const id = clientId;
      this.opts.metrics?.eventsReceived.inc(message.events.length);
      // Bad events are refused before anything is written, named in the ack, and not stored;
      // the rest of the batch is stored in one transaction.
      const { valid: checked, rejected } = partitionEvents(message.events);
      const valid = keySuffix === '' ? checked : checked.map((e) => ({ ...e, sessionKey: e.sessionKey + keySuffix }));
      // Queued at once so LMDB can commit several batches together; each is stored only if the
      // one before it was (afterSeq), and the acks go out in order.
      const after = expectedSeq;
      const through = highestEvent(message.events, after);
      expectedSeq = through.seq;
      const first = refused ? Promise.resolve(null) : store.appendEvents(id, valid, after, through);
      first.catch(() => {}); // handled in order below
      // A client that sends faster than its batches are stored stops being read (TCP pushes back
      // on it) until its queue drains: one flooding plugin cannot fill LMDB's write queue ahead of
      // every other connection, nor the daemon's memory.
      if (++inFlight >= MAX_IN_FLIGHT_BATCHES) socket.pause();
      const settled = () => {
        if (--inFlight <= MAX_IN_FLIGHT_BATCHES / 2 && socket.isPaused) socket.resume();
      };
      pending = pending.then(async () => {
        if (refused) return;
        try {
          // Null when a batch before it had to be stored event by event: its turn is now.
          const result = (await first.catch((err: unknown) => storeEach(err, id, valid, rejected, after, through))) ?? (await store.appendEvents(id, valid, after, through));
          if (!result) throw new Error('an earlier batch of this connection was not stored');
          const refusedNow = rejected.filter((r) => r.seq > after);
          if (refusedNow.length > 0) {
            this.refusals.warn('refused events', { clientId: id, count: refusedNow.length, first: refusedNow[0] });
          }
          send({ type: 'ack', seq: result.ackedSeq, ...(refusedNow.length > 0 && { rejected: refusedNow }) });
          for (const sessionKey of result.refusedSessions) {
            refuse('limit_reached', `session ${sessionKey} is not stored: the daemon keeps at most ${store.limits.maxSessions} sessions (--max-sessions); remove some with \`clawrl-daemon sessions rm\``);
          }
          this.opts.metrics?.eventsAcked.inc(message.events.length);
          if (result.stored > 0) this.opts.onStored?.();
        } catch (err) {
          // Not acked. Later batches must not be stored ahead of these (an ack covers every seq
          // below it), so the connection closes: the plugin reconnects with backoff and resends
          // everything after the acked seq from its spool.
          const full = err instanceof StorageFullError;
          log[full ? 'warn' : 'error']('storing events failed', { clientId: id, error: errorMessage(err) });
          send({ type: 'error', code: full ? 'storage_full' : 'internal', message: `storing events failed: ${errorMessage(err)}` });
          refused = true;
          socket.close(1013, full ? 'storage full' : 'storing events failed');
        }
      }).finally(settled);
    });
    const unreadable = (ws: WebSocket) => {
      refused = true;
      ws.close(1007, 'unreadable frame');
    };
    /**
     * A batch whose transaction failed for another reason than a full store: stored again event
     * by event, so that one event that cannot be stored is refused (named in the ack) instead of
     * stalling its client forever.
     */
    const storeEach = async (err: unknown, id: string, events: Event[], rejected: RejectedEvent[], after: number, through: ClientAck): Promise<AppendResult> => {
      if (err instanceof StorageFullError || events.length === 0) throw err;
      log.warn('a batch could not be stored; storing its events one by one', { clientId: id, error: errorMessage(err) });
      const total: AppendResult = { ackedSeq: after, stored: 0, duplicates: 0, dropped: 0, refusedSessions: [] };
      for (const event of events) {
        const mark = { seq: event.seq, at: event.at };
        const result = await store.appendEvents(id, [event], total.ackedSeq, mark).catch((eventErr: unknown) => {
          if (eventErr instanceof StorageFullError) throw eventErr;
          rejected.push({ seq: event.seq, reason: `${event.kind} event could not be stored: ${errorMessage(eventErr)}` });
          return store.appendEvents(id, [], total.ackedSeq, mark);
        });
        if (!result) throw new Error('the acked seq moved while a batch was stored event by event');
        total.ackedSeq = result.ackedSeq;
        total.stored += result.stored;
        total.duplicates += result.duplicates;
        total.dropped += result.dropped;
        total.refusedSessions.push(...result.refusedSessions);
      }
      rejected.sort((a, b) => a.seq - b.seq);
      const last = await store.appendEvents(id, [], total.ackedSeq, through);
      if (!last) throw new Error('the acked seq moved while a batch was stored event by event');
      return { ...total, ackedSeq: last.ackedSeq };
    };
    socket.on('close', () => {
      clearTimeout(helloTimer);
      this.clients.delete(socket);
      if (clientId) log.info('plugin disconnected', { clientId });
    });
    socket.on('error', (err) => log.warn('plugin socket error', { clientId, error: err.message }));
  }
}
