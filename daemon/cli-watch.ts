// `clawrl-daemon status --watch`: a live view of the running daemon, redrawn every second from
// GET /ui/api/overview (the dashboard's data), until Ctrl-C.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Overview } from './dashboard.ts';
import { bar, formatDuration } from './progress.ts';

const SPARK = '▁▂▃▄▅▆▇█';

/** A mean reward in −1…+1 as one block per version; · where a version has nothing scored. */
const sparkline = (values: (number | null)[]) =>
  values.map((v) => (v === null ? '·' : SPARK[Math.round(((v + 1) / 2) * (SPARK.length - 1))])).join('');

const signed = (n: number | null) => (n === null ? '–' : `${n >= 0 ? '+' : ''}${n.toFixed(2)}`);

export function renderWatch({ status: s, versions, step }: Overview): string {
  const t = s.training;
  const lines = [
    `clawrl daemon ${s.version} · pid ${s.pid} · up ${formatDuration(s.uptimeS * 1000)} · ${s.mode} mode`,
    `serving ${s.weightVersion}${t?.pinned ? ' (pinned)' : ''} · plugins connected ${s.connections} · sessions opted in ${s.sessions.optedIn} of ${s.sessions.total}`,
    `queues: scoring ${s.scoring.queueDepth} · training ${t ? `${t.waiting}/${t.batchSize}` : 'off'} · steps this run ${t?.steps ?? 0}`,
  ];
  if (step) {
    // The estimate is the recent steps' median, so the bar stops short of full rather than lie.
    const fraction = step.expectedMs ? Math.min(0.99, step.elapsedMs / step.expectedMs) : 0;
    const left = step.expectedMs ? `, about ${formatDuration(Math.max(0, step.expectedMs - step.elapsedMs))} left` : '';
    lines.push(`${step.phase} ${step.version} on ${step.turns} turns ${bar(fraction)} ${Math.floor(fraction * 100)}% ${formatDuration(step.elapsedMs)}${left}`);
  }
  lines.push('', `reward of served turns per version (▁ −1 … █ +1): ${sparkline(versions.map((v) => v.served.meanReward))}`);
  for (const v of versions.slice(-5)) {
    const hit = v.served.hitRate === null ? '–' : `${Math.round(v.served.hitRate * 100)} %`;
    const loss = v.loss === null ? '' : ` · loss ${v.loss.toFixed(4)}`;
    lines.push(`  ${v.version.padEnd(8)} reward ${signed(v.served.meanReward)} · hit rate ${hit} · ${v.served.scored} scored${loss}`);
  }
  return lines.join('\n') + '\n';
}

export async function watchStatus(overview: () => Promise<Overview | undefined>, out: NodeJS.WriteStream = process.stdout): Promise<never> {
  // On a terminal each frame replaces the last; piped, frames follow one another.
  const [before, after] = out.isTTY ? ['\x1b[H\x1b[2J', ''] : ['', '\n'];
  for (;;) {
    const o = await overview();
    out.write(before + (o ? renderWatch(o) : 'clawrl daemon is not running; waiting for it (Ctrl-C quits)\n') + after);
    await sleep(1_000);
  }
}
