// Progress for long CLI work, drawn on stderr only when it is a terminal: a pipe or a log file
// gets nothing, so scripted output stays clean.
export function bar(fraction: number, width = 24): string {
  const filled = Math.round(Math.max(0, Math.min(1, fraction)) * width);
  return '█'.repeat(filled) + '░'.repeat(width - filled);
}

export function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export interface Progress {
  update(done: number, total: number): void;
  /** Draws the final state and ends the line. */
  finish(): void;
}

/** Redraws at most every 100 ms, with the rate so far as the estimate of what is left. */
export function progress(label: string, out: NodeJS.WriteStream = process.stderr): Progress {
  if (!out.isTTY) return { update() {}, finish() {} };
  const started = Date.now();
  let state = { done: 0, total: 0 };
  let drawnAt = 0;
  const draw = () => {
    const { done, total } = state;
    const elapsed = Date.now() - started;
    const left = done > 0 && done < total ? `, ${formatDuration((elapsed * (total - done)) / done)} left` : '';
    out.write(`\r${label} ${bar(total ? done / total : 0)} ${total ? Math.floor((100 * done) / total) : 0}% ${done}/${total}${left}\x1b[K`);
    drawnAt = Date.now();
  };
  return {
    update(done, total) {
      state = { done, total };
      if (Date.now() - drawnAt >= 100) draw();
    },
    finish() {
      if (state.total === 0) return;
      draw();
      out.write('\n');
    },
  };
}
