// The daemon's background loops (turn assembly, scoring, training) share this: a pass runs on
// a timer and on demand, never two at once; asking during a pass joins that pass.
export class Loop<T> {
  private timer?: NodeJS.Timeout;
  private running?: Promise<T>;
  private stopped = false;

  constructor(
    private readonly pass: () => Promise<T>,
    private readonly pollMs = 1_000,
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

  /** Runs a pass (or joins the one in progress); once stopped, runs nothing. */
  run(): Promise<T | undefined> {
    if (this.stopped) return Promise.resolve(undefined);
    this.running ??= this.pass().finally(() => (this.running = undefined));
    return this.running;
  }
}
