// The plugin's one connection to the daemon. Events go into the spool first (durable, bounded,
// numbered); the link sends whatever is durable and not yet acknowledged, resends everything after
// the daemon's `welcome.ackedSeq` on every (re)connect, and reconnects with exponential backoff and
// jitter. The daemon dedups on (clientId, seq), so events arrive exactly once and in order; a
// welcome whose acked seq this spool did not send means a copy of the state folder shares the
// client id, and this one takes a new id.
// An event the daemon refuses (named in its ack) or the protocol refuses (at enqueue) is set aside
// in the quarantine file and never resent. The backoff resets only once acks make progress, so a
// daemon that accepts the connection but cannot store what it is sent is not hammered.
// Nothing here depends on OpenClaw: tests drive it on plain Node.
import { randomUUID } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import WebSocket from 'ws';
import {
  DEFAULT_MAX_FRAME_BYTES,
  MAX_EVENTS_PER_FRAME,
  PROTOCOL_VERSION,
  ProtocolError,
  decode,
  encode,
  type Event,
  type ServerMessage,
  type WeightsUpdatedMessage,
} from '../protocol/index.ts';
import { Quarantine, Spool, claimSpoolDir, type NewEvent, type QuarantineStats, type SpoolDir, type SpoolStats } from './spool.ts';

export interface LinkLogger {
  debug?(message: string): void;
  info(message: string): void;
  warn(message: string): void;
}

export interface LinkOptions {
  /** ws://host:port/ws of the daemon (wss:// when it serves TLS). */
  url: string;
  token: string;
  /** PEM of a CA to trust for wss:// besides the system's (a self-signed daemon certificate). */
  ca?: string;
  /** The plugin's own state folder: client id, spool and quarantine live here (or in a `spool-N/` folder inside it when another process writes this one). */
  stateDir: string;
  logger: LinkLogger;
  clientVersion: string;
  spoolMaxEvents: number;
  spoolMaxBytes: number;
  /** First reconnect delay; doubles per failed attempt up to `maxBackoffMs`. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Called for every `weights.updated` the daemon pushes. */
  onWeights?: (message: WeightsUpdatedMessage) => void;
}

export type LinkState = 'stopped' | 'connecting' | 'connected' | 'waiting';

export interface LinkStatus extends SpoolStats, QuarantineStats {
  state: LinkState;
  clientId: string;
  url: string;
  weightVersion?: string;
  lastError?: string;
  /** While waiting: when the next connection attempt is due (epoch ms). */
  retryAt?: number;
  /** Events sent on the wire (resends included) since start. */
  sent: number;
}

/** Bytes of events per frame: well under the daemon's frame limit, so one slow frame stays small. */
const BATCH_BYTES = Math.min(1024 * 1024, DEFAULT_MAX_FRAME_BYTES / 4);
/** Stop sending while this much is queued on the socket; acks resume it. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
/** The least wait before reconnecting to a daemon that said its storage is full. */
const STORAGE_FULL_BACKOFF_MS = 15_000;

const clientIdFile = (spoolDir: string) => join(spoolDir, 'client-id');

function readId(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** A fresh id written to `file` (replacing what is there), synced before it is used. */
function newId(file: string): string {
  const id = `clawrl-${randomUUID()}`;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(`${file}.tmp`, id, { flush: true });
  renameSync(`${file}.tmp`, file);
  return id;
}

const installIds = new Map<string, string>();

/**
 * The OpenClaw install's id: one for every process on a state folder (a gateway and its `agent
 * --local` runs share sessions), where each spool folder has its own client id. The daemon keeps
 * each install's sessions apart (`agent:main:main` is in every install). Created once, by whichever
 * process comes first: a hard link either makes the whole file or finds another's.
 */
export function installIdOf(stateDir: string): string {
  const known = installIds.get(stateDir);
  if (known !== undefined) return known;
  const file = join(stateDir, 'install-id');
  let id = readId(file);
  if (id === undefined) {
    const mine = `${file}.${process.pid}.tmp`;
    id = `clawrl-install-${randomUUID()}`;
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(mine, id, { flush: true });
    try {
      linkSync(mine, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      id = readId(file) ?? id;
    } finally {
      unlinkSync(mine);
    }
  }
  installIds.set(stateDir, id);
  return id;
}

export class Link {
  private id: string;
  private readonly spoolDir: SpoolDir;
  private readonly spool: Spool;
  private readonly quarantine: Quarantine;
  private ws: WebSocket | undefined;
  private state: LinkState = 'stopped';
  /** Highest seq sent on the current connection. */
  private sentSeq = 0;
  private sentCount = 0;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private retryAt: number | undefined;
  private pumpScheduled = false;
  private weightVersion: string | undefined;
  private lastError: string | undefined;
  /** The next reconnect waits at least this long (set by a daemon whose storage is full). */
  private backoffFloorMs = 0;

  constructor(private readonly opts: LinkOptions) {
    this.spoolDir = claimSpoolDir(opts.stateDir);
    const dir = this.spoolDir.dir;
    if (dir !== opts.stateDir) opts.logger.info(`clawrl: another process writes the spool in ${opts.stateDir}; this one uses ${dir}`);
    this.id = readId(clientIdFile(dir)) ?? newId(clientIdFile(dir));
    this.quarantine = new Quarantine(dir);
    this.spool = new Spool(dir, {
      maxEvents: opts.spoolMaxEvents,
      maxBytes: opts.spoolMaxBytes,
      logger: opts.logger,
      onDurable: () => this.schedulePump(),
    });
  }

  /**
   * Queues an event: synchronous and cheap, never touches the network. An event the protocol
   * refuses (an id over its bound, say) is quarantined at once and undefined returned.
   */
  enqueue(event: NewEvent): Event | undefined {
    try {
      return this.spool.append(event);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.setAside([{ event, reason: err.message }]);
      return undefined;
    }
  }

  get clientId(): string {
    return this.id;
  }

  start(): void {
    if (this.state !== 'stopped') return;
    this.connect();
  }

  /** Closes the socket and writes the spool out; pending events stay for the next start. */
  async stop(): Promise<void> {
    await this.disconnect();
    await this.spool.flush();
  }

  /** Stops for good and releases the spool folder (another Link may then open it). */
  async close(): Promise<void> {
    await this.disconnect();
    await this.spool.close();
    this.spoolDir.release();
  }

  private async disconnect(): Promise<void> {
    this.state = 'stopped';
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    this.ws = undefined;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise((resolve) => ws.once('close', resolve));
      ws.close(1000, 'plugin stopping');
      // A daemon that never answers the close handshake must not hold up the host's shutdown.
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
      ws.terminate();
    }
  }

  /** Applies changed settings (a config reload): a new url or token reconnects. */
  reconfigure(next: Pick<LinkOptions, 'url' | 'token' | 'ca' | 'spoolMaxEvents' | 'spoolMaxBytes' | 'onWeights'>): void {
    const reconnect = next.url !== this.opts.url || next.token !== this.opts.token || next.ca !== this.opts.ca;
    Object.assign(this.opts, next);
    this.spool.setBounds(next.spoolMaxEvents, next.spoolMaxBytes);
    // Closing makes onClose schedule a connect with the new settings.
    if (reconnect) this.ws?.terminate();
  }

  status(): LinkStatus {
    return {
      ...this.spool.stats(),
      ...this.quarantine.stats(),
      state: this.state,
      clientId: this.clientId,
      url: this.opts.url,
      weightVersion: this.weightVersion,
      lastError: this.lastError,
      ...(this.state === 'waiting' && { retryAt: this.retryAt }),
      sent: this.sentCount,
    };
  }

  // --- connection ---

  private connect(): void {
    this.state = 'connecting';
    const ws = new WebSocket(this.opts.url, {
      headers: { authorization: `Bearer ${this.opts.token}` },
      ...(this.opts.ca && { ca: this.opts.ca }),
      maxPayload: DEFAULT_MAX_FRAME_BYTES,
      handshakeTimeout: 10_000,
    });
    this.ws = ws;
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => {
      // The link never keeps a process alive: a gateway lives on by itself, and a one-shot
      // `agent --local` run must be able to exit (the spool keeps what is unsent for next time).
      (ws as unknown as { _socket?: { unref(): void } })._socket?.unref();
      ws.send(encode({ type: 'hello', protocol: PROTOCOL_VERSION, clientId: this.clientId, clientVersion: this.opts.clientVersion, installId: installIdOf(this.opts.stateDir) }));
    });
    ws.on('message', (data: Buffer) => this.onMessage(ws, data));
    ws.on('unexpected-response', (_req, res) => {
      this.lastError = `daemon refused the connection: HTTP ${res.statusCode}`;
      ws.terminate();
    });
    ws.on('error', (err) => {
      this.lastError = err.message;
    });
    ws.on('close', () => this.onClose(ws));
  }

  private onMessage(ws: WebSocket, data: Buffer): void {
    if (ws !== this.ws) return;
    let msg: ServerMessage;
    try {
      msg = decode(data) as ServerMessage;
    } catch (err) {
      this.opts.logger.warn(`clawrl: bad frame from the daemon: ${(err as Error).message}`);
      ws.terminate();
      return;
    }
    switch (msg.type) {
      case 'welcome':
        if (!this.spool.isOwnAck(msg.ackedSeq, msg.ackedAt)) {
          this.leaveClientId(msg.ackedSeq);
          ws.terminate();
          break;
        }
        this.state = 'connected';
        this.lastError = undefined;
        this.weightVersion = msg.weightVersion;
        this.acked(msg.ackedSeq);
        this.sentSeq = msg.ackedSeq;
        // A connection proves the daemon healthy only once it stores what it is sent; with nothing to send, it is.
        if (this.spool.stats().pending === 0) this.resetBackoff();
        this.opts.logger.info(`clawrl: connected to ${this.opts.url} (weights ${msg.weightVersion}, ${this.spool.stats().pending} events to send)`);
        this.pump();
        break;
      case 'ack':
        if (msg.rejected) this.setAside(msg.rejected.map((r) => ({ event: this.spool.get(r.seq) ?? { seq: r.seq }, reason: `refused by the daemon: ${r.reason}` })));
        this.acked(msg.seq);
        this.pump();
        break;
      case 'weights.updated':
        this.weightVersion = msg.version;
        this.opts.logger.info(`clawrl: new weights ${msg.version} (${msg.recipe}) are serving`);
        this.opts.onWeights?.(msg);
        break;
      case 'error':
        this.lastError = `${msg.code}: ${msg.message}`;
        if (msg.code === 'storage_full') this.backoffFloorMs = STORAGE_FULL_BACKOFF_MS;
        this.opts.logger.warn(`clawrl: daemon error ${this.lastError}`);
        break;
      default:
        this.opts.logger.warn(`clawrl: unexpected ${(msg as { type: string }).type} from the daemon`);
    }
  }

  private onClose(ws: WebSocket): void {
    if (ws !== this.ws || this.state === 'stopped') return;
    this.ws = undefined;
    const delay = this.backoff();
    this.state = 'waiting';
    this.retryAt = Date.now() + delay;
    this.opts.logger.debug?.(`clawrl: disconnected (${this.lastError ?? 'closed'}); retrying in ${delay} ms`);
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
    this.reconnectTimer.unref();
  }

  /**
   * The daemon acked events under this client id that this spool did not send (Spool.isOwnAck):
   * a copy of this state folder uses the id too. This one takes a new id, and sends everything
   * pending under it on the next connection.
   */
  private leaveClientId(theirSeq: number): void {
    const old = this.id;
    const { lastSeq, ackedSeq, pending } = this.spool.stats();
    this.id = newId(clientIdFile(this.spoolDir.dir));
    this.lastError = `client id ${old} is used by another copy of this state folder`;
    this.opts.logger.warn(
      `clawrl: the daemon holds seq ${theirSeq} of client id ${old}, which this spool (acked ${ackedSeq}, last ${lastSeq}) did not send there: a copy of ${this.spoolDir.dir} (a restored backup, a cloned volume) uses that id too. This one is now ${this.id} and sends its ${pending} pending event(s) under it.`,
    );
  }

  /** Exponential backoff with "equal jitter": half fixed, half random, so clients spread out. */
  private backoff(): number {
    const min = this.opts.minBackoffMs ?? 250;
    const max = this.opts.maxBackoffMs ?? 30_000;
    const cap = Math.min(max, min * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.max(this.backoffFloorMs, Math.round(cap / 2 + (Math.random() * cap) / 2));
  }

  private resetBackoff(): void {
    this.attempt = 0;
    this.backoffFloorMs = 0;
  }

  /** The daemon made everything up to `seq` durable; progress resets the backoff. */
  private acked(seq: number): void {
    const before = this.spool.stats().ackedSeq;
    this.spool.ack(seq);
    if (this.spool.stats().ackedSeq > before) this.resetBackoff();
  }

  /** Events that will never be stored: kept in the quarantine file, logged, never resent. */
  private setAside(refused: { event: unknown; reason: string }[]): void {
    for (const { event, reason } of refused) this.quarantine.add(event, reason);
    if (refused.length === 0) return;
    const { quarantined } = this.quarantine.stats();
    this.opts.logger.warn(`clawrl: set aside ${refused.length} event(s) the daemon will not store (${refused[0]!.reason}); ${quarantined} in ${this.quarantine.file}`);
  }

  // --- sending ---

  private schedulePump(): void {
    if (this.pumpScheduled || this.state !== 'connected') return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    const ws = this.ws;
    if (this.state !== 'connected' || !ws || ws.readyState !== WebSocket.OPEN) return;
    while (ws.bufferedAmount < HIGH_WATER_BYTES) {
      const batch = this.spool.durableAfter(this.sentSeq, BATCH_BYTES, MAX_EVENTS_PER_FRAME);
      if (batch.length === 0) return;
      ws.send(encode({ type: 'events', events: batch }));
      this.sentSeq = batch.at(-1)!.seq;
      this.sentCount += batch.length;
    }
  }
}
