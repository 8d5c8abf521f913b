// Soak with faults, shared by the short run in the suite (test/soak.test.ts) and the long one
// (bench/soak.ts): several real plugin links stream events while the daemon (a child process)
// is killed with SIGKILL at random moments and restarted on the same data dir and port, and
// links drop and reconnect on their own. At the end every link's spool must be empty, and the
// store must hold every event exactly once, in order per client.
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Store } from '../daemon/store.ts';
import { Link } from '../plugin/link.ts';
import { runCli, spawnDaemon, tempDir, type DaemonProcess } from './helpers.ts';

export interface SoakOptions {
  links: number;
  eventsPerLink: number;
  kills: number;
  /** Random link drops (stop + start of a link) over the run. */
  drops: number;
  seed?: number;
}

export interface SoakReport {
  sent: number;
  kills: number;
  drops: number;
  stored: number;
  lost: number;
  duplicates: number;
  outOfOrder: number;
  spooledAtEnd: number;
  seconds: number;
}

const quiet = { info() {}, warn() {}, debug() {} };

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const start = performance.now();
  let rand = opts.seed ?? 1;
  const random = () => ((rand = (rand * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const dataDir = tempDir('clawrl-soak-');
  const port = await freePort();
  let daemon: DaemonProcess = await spawnDaemon(dataDir, ['--port', String(port)]);
  const token = (await runCli(dataDir, ['token'])).stdout.trim();
  // The links are processes of one OpenClaw install (each takes its own spool folder in it), so
  // the daemon stores their sessions under the keys they send.
  const stateDir = tempDir('clawrl-soak-state-');
  const links = Array.from({ length: opts.links }, () =>
    new Link({ url: `ws://127.0.0.1:${port}/ws`, token, stateDir, logger: quiet, clientVersion: 'soak', spoolMaxEvents: 1_000_000, spoolMaxBytes: 512 * 1024 * 1024, minBackoffMs: 20, maxBackoffMs: 250 }),
  );
  links.forEach((link, i) => {
    link.enqueue({ kind: 'session.optin', at: Date.now(), sessionKey: `soak-${i}` });
    link.start();
  });

  // Faults at random points of the stream: kills of the daemon, drops of single links.
  const total = opts.eventsPerLink;
  const killAt = new Set(Array.from({ length: opts.kills }, () => Math.floor(random() * total)));
  const dropAt = new Map(Array.from({ length: opts.drops }, () => [Math.floor(random() * total), Math.floor(random() * opts.links)] as const));
  let kills = 0;
  let drops = 0;
  for (let n = 0; n < total; n++) {
    links.forEach((link, i) => link.enqueue({ kind: 'user.message', at: Date.now(), sessionKey: `soak-${i}`, content: String(n) }));
    if (killAt.has(n)) {
      await daemon.stop('SIGKILL');
      kills++;
      await sleep(random() * 200);
      daemon = await spawnDaemon(dataDir, ['--port', String(port)]);
    }
    const drop = dropAt.get(n);
    if (drop !== undefined) {
      await links[drop]!.stop();
      links[drop]!.start();
      drops++;
    }
    if (n % 50 === 0) await sleep(1); // let the sockets breathe, as a real agent would
  }
  for (const end = Date.now() + 120_000; links.some((l) => l.status().pending > 0) && Date.now() < end; ) await sleep(50);
  const spooledAtEnd = links.reduce((sum, l) => sum + l.status().pending, 0);
  await Promise.all(links.map((l) => l.close()));
  await daemon.stop();

  const store = await Store.open(dataDir);
  let stored = 0;
  let lost = 0;
  let duplicates = 0;
  let outOfOrder = 0;
  try {
    for (let i = 0; i < opts.links; i++) {
      const contents = [...store.sessionEventsOf(`soak-${i}`)].filter((e) => e.kind === 'user.message').map((e) => Number((e as { content: string }).content));
      stored += contents.length;
      const unique = new Set(contents);
      duplicates += contents.length - unique.size;
      lost += total - unique.size;
      outOfOrder += contents.filter((c, k) => k > 0 && c <= contents[k - 1]!).length;
    }
  } finally {
    await store.close();
  }
  return { sent: total * opts.links, kills, drops, stored, lost, duplicates, outOfOrder, spooledAtEnd, seconds: (performance.now() - start) / 1000 };
}
