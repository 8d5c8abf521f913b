// The daemon's background loops (turn assembly, scoring, training) share this: a pass runs on
// a timer and on demand, never two at once; asking during a pass joins that pass.
import { setTimeout as sleep } from 'node:timers/promises';

export class Loop<T> {
  private timer?: NodeJS.Timeout;
  private running?: Promise<T | undefined>;
  private stopped = false;
  private lastEnded = -Infinity;

  /**
   * @param pollMs a pass runs at least this often.
   * @param minGapMs asked for sooner than this after the last pass ended, a pass waits until then,
   *   and the asks meanwhile join it: a pass after every stored batch would cost more than the
   *   work it finds once ingest is busy, since each pass has its own fixed cost.
   */
  constructor(
    private readonly pass: () => Promise<T>,
    private readonly pollMs = 1_000,
    private readonly minGapMs = 0,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.run(), this.pollMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.settled();
  }

  /** Waits for a pass in progress, if any. */
  async settled(): Promise<void> {
    await this.running;
  }

  /** Runs a pass (or joins the one in progress or waiting for its gap); once stopped, runs nothing. */
  run(): Promise<T | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    this.running ??= this.passAfterGap().finally(() => {
      this.running = undefined;
      this.lastEnded = performance.now();
    });
    return this.running;
  }

  private async passAfterGap(): Promise<T | undefined> {
    const wait = this.lastEnded + this.minGapMs - performance.now();
    if (wait > 0) await sleep(wait);
    return this.stopped ? undefined : this.pass();
  }
}
