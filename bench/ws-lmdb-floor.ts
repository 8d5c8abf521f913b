// The least a plugin-facing daemon on LMDB can do, for bench/ingest.ts to measure against.
// `openFloorStore` stores a frame's events as lmdb-js alone does in the bench (three puts an
// event, one durable commit a frame); run as a script, this file serves it over a real ws server
// in its own process, answering hello with welcome and acking each events frame once stored. No
// validation, redaction, session records or indexes beyond those two, no passes. Same transport
// and disk as the daemon, so the daemon's ack latency minus this one's is what the daemon adds.
// Usage: node --import tsx bench/ws-lmdb-floor.ts <dir>   (prints "floor on ws://127.0.0.1:PORT")
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { open } from 'lmdb';
import { WebSocketServer } from 'ws';
import { PROTOCOL_VERSION, decode, encode, type Event } from '../protocol/index.ts';

/** An LMDB store at `path` that commits each batch of events durably with three puts an event. */
export function openFloorStore(path: string): { store(batch: Pick<Event, 'seq' | 'sessionKey' | 'runId'>[]): Promise<unknown>; close(): Promise<void> } {
  const env = open({ path, maxDbs: 4 });
  const [events, sessions, runs] = ['events', 'sessions', 'runs'].map((name) => env.openDB({ name }));
  return {
    store: (batch) =>
      env.transaction(() => {
        for (const e of batch) {
          events!.put(e.seq, e);
          sessions!.put([e.sessionKey, e.seq], null);
          runs!.put([e.runId ?? '', e.seq], null);
        }
      }),
    close: () => env.close(),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  const floor = openFloorStore(join(process.argv[2]!, 'ws-floor'));
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      const message = decode(data, Infinity, { events: 'seq' });
      if (message.type === 'hello') {
        socket.send(encode({ type: 'welcome', protocol: PROTOCOL_VERSION, serverVersion: 'floor', ackedSeq: 0, weightVersion: 'base' }));
        return;
      }
      if (message.type !== 'events') return;
      const batch = message.events as Event[];
      void floor.store(batch).then(() => socket.send(encode({ type: 'ack', seq: Math.max(...batch.map((e) => e.seq)) })));
    });
  });
  wss.on('listening', () => {
    const { port } = wss.address() as { port: number };
    console.log(`floor on ws://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => {
    wss.close();
    void floor.close().then(() => process.exit(0));
  });
}
