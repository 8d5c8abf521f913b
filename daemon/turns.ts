// Turn assembly: a sample (one served response) becomes a turn once its next state is known.
//  - A response with tool calls: the results of ALL its calls (joined exactly by tool call id, in its run),
//    or what arrived of them once its run ended (plus a grace period) or it went idle.
//  - A response without tool calls: the session's next user message, explicit feedback, or
//    session end, opt-out (what follows is not captured) or idle timeout ("no next state").
// "After the response" is judged on the plugin's clock (the `at` of the response's own
// model.call event) when the plugin sent one, else by arrival order in the daemon's event log.
// All state lives in LMDB and each turn is written in the same transaction that closes its
// sample, so a restart in the middle loses nothing and makes no duplicate turn.
import type { Store, SampleRecord, StoredEvent, OpenSample, TurnRecord } from './store.ts';
import type { NextState, ToolCall, ToolResult } from '../recipes/types.ts';
import { screenAction, screenshotAfter } from '../recipes/evidence.ts';
import type { Logger } from './log.ts';
import { Loop } from './loop.ts';
import { errorMessage } from './errors.ts';

export interface AssemblerOptions {
  store: Store;
  log: Logger;
  /** A response with nothing after it for this long becomes a turn with no next state. */
  idleMs?: number;
  /** After its run ended, how long a tool-calling response waits for missing results. */
  toolGraceMs?: number;
  pollMs?: number;
  /** Called (after commit) with each new or updated turn. */
  onTurn?: (turn: TurnRecord) => void;
}

/** A sample's next state, or until when it stays undecided unless something new arrives for its session. */
type Outcome = { nextState: NextState } | { undecidedUntil: number };

const SETTLE_MS = 5_000;
/** Events between saves of the late-feedback cursor when no feedback moves it. */
const FEEDBACK_CURSOR_SAVE_EVERY = 10_000;

const sameRun = (e: StoredEvent, sample: OpenSample) => e.runId === undefined || sample.runId === undefined || e.runId === sample.runId;

type ToolResultEvent = Extract<StoredEvent, { kind: 'tool.result' }>;

/** When the call started, on the plugin's clock: its `at` is when the call ended, and OpenClaw measured how long it ran. */
function startedAtOf(e: ToolResultEvent): number | undefined {
  return e.durationMs !== undefined && Number.isFinite(e.durationMs) && e.durationMs >= 0 ? e.at - e.durationMs : undefined;
}

function toolResultOf(e: ToolResultEvent): ToolResult {
  const startedAt = startedAtOf(e);
  return {
    toolCallId: e.toolCallId,
    toolName: e.toolName,
    ...(e.exitCode !== undefined && { exitCode: e.exitCode }),
    isError: e.isError,
    ...(e.timedOut !== undefined && { timedOut: e.timedOut }),
    output: e.output,
    ...(e.screen !== undefined && { screen: e.screen }),
    ...(startedAt !== undefined && { startedAt }),
    endedAt: e.at,
  };
}

/**
 * When this response's screen actions (a click, typing) have no screenshot of their own response
 * known to come after them: the time the last of them ended, after which a later response's
 * screenshot shows their effect. Undefined when there is none to wait for, or an action's end is
 * unknown (its result is missing).
 */
function screenActionsEnd(calls: readonly ToolCall[], results: readonly ToolResult[]): number | undefined {
  let end: number | undefined;
  for (const call of calls) {
    if (screenAction(call) === null || screenshotAfter(call, results)) continue;
    const ended = results.find((r) => r.toolCallId === call.id)?.endedAt;
    if (ended === undefined) return undefined;
    end = Math.max(end ?? ended, ended);
  }
  return end;
}

function feedbackOf(e: Extract<StoredEvent, { kind: 'feedback' }>): NextState['feedback'] {
  return { ...(e.rating && { rating: e.rating }), ...(e.hint && { hint: e.hint }) };
}

/** Hints given on one turn are kept in one text, in the order given, separated by this. */
export const HINT_SEPARATOR = '\n\n';

/** All feedback on a turn counts: the latest rating wins, hints add up (a repeated hint once). */
export function mergeFeedback(before: NextState['feedback'], after: NextState['feedback']): NextState['feedback'] {
  const rating = after?.rating ?? before?.rating;
  const hints = [...hintsOf(before), ...hintsOf(after)].filter((h, i, all) => all.indexOf(h) === i);
  return { ...(rating && { rating }), ...(hints.length > 0 && { hint: hints.join(HINT_SEPARATOR) }) };
}

/** The separate hints of a turn's feedback. */
export function hintsOf(feedback: NextState['feedback']): string[] {
  return (feedback?.hint ?? '').split(HINT_SEPARATOR).map((h) => h.trim()).filter(Boolean);
}

export class TurnAssembler {
  private readonly idleMs: number;
  private readonly toolGraceMs: number;
  private readonly loop: Loop<number>;
  /** Event log position up to which feedback has been attached (saved with each pass that meets feedback, and every 10,000 events). */
  private feedbackCursor?: number;
  private feedbackCursorSaved = 0;
  /** Sessions that got events or a new open sample since their last look (the store tells). */
  private readonly changed = new Set<string>();
  /**
   * Sessions with open samples and nothing new since their last look, each with the time its
   * decisions could change by themselves (a settle, grace or idle period ending).
   */
  private readonly revisits = new Map<string, number>();
  /** Whether the sessions that had open samples before this assembler existed are known. */
  private seeded = false;
  /**
   * Log position of a run's (or session's) end → when a pass first met it, in this daemon's time:
   * the tool grace counts from then, as `at` is the plugin's clock, maybe minutes off this one's.
   * Kept while the grace can matter; after a restart a grace starts again (a wait, never a loss).
   */
  private readonly endsSeen = new Map<number, number>();

  constructor(private readonly opts: AssemblerOptions) {
    this.idleMs = opts.idleMs ?? 10 * 60_000;
    this.toolGraceMs = opts.toolGraceMs ?? 5_000;
    const pass = () =>
      this.assembleOnce().catch((err: unknown) => {
        opts.log.error('turn assembly failed', { error: errorMessage(err) });
        return 0;
      });
    this.loop = new Loop(pass, opts.pollMs ?? 1_000);
    opts.store.onSessionChange((sessionKey) => this.changed.add(sessionKey));
  }

  start(): void {
    this.loop.start();
  }

  stop(): Promise<void> {
    return this.loop.stop();
  }

  /** Runs one pass unless one is running; resolves with the number of turns written. */
  async nudge(): Promise<number> {
    return (await this.loop.run()) ?? 0;
  }

  /**
   * One pass over the open samples of the sessions that changed or are due a look, plus feedback
   * that arrived for already-made turns. A pass costs what changed, not every open sample: a
   * gateway's sessions each keep their last reply open until the user's next message.
   */
  async assembleOnce(now = Date.now()): Promise<number> {
    const { store } = this.opts;
    if (!this.seeded) {
      for (const sessionKey of store.sessionsWithOpenSamples()) this.changed.add(sessionKey);
      this.seeded = true;
    }
    const look = new Set(this.changed);
    this.changed.clear();
    for (const [log, seenAt] of this.endsSeen) if (now - seenAt > 2 * this.toolGraceMs + SETTLE_MS) this.endsSeen.delete(log);
    for (const [sessionKey, due] of this.revisits) if (due <= now) look.add(sessionKey);
    // The pass's turns are written together: LMDB commits them in one or a few transactions,
    // where awaiting each cost a durable commit per turn and let assembly fall behind ingest.
    const writes: Promise<boolean>[] = [];
    for (const sessionKey of look) {
      // One read of a session's events serves all of its open samples in this pass.
      const open = store.openSamplesOf(sessionKey);
      this.revisits.delete(sessionKey);
      if (open.length === 0) continue;
      const events = [...store.sessionEventsOf(sessionKey, { after: this.firstRelevantLog(open) - 1 })];
      let due = Infinity;
      for (const sample of open) {
        let read: SampleRecord | undefined;
        const record = () => (read ??= store.sample(sample.id));
        const outcome = this.decide(sample, events, now, () => record()?.toolCalls ?? []);
        if ('undecidedUntil' in outcome) {
          due = Math.min(due, outcome.undecidedUntil);
          continue;
        }
        const full = record();
        // A turn that could not be written is tried again at the next pass.
        if (full) writes.push(this.writeTurn(full, outcome.nextState).catch((err: unknown) => (this.changed.add(sessionKey), Promise.reject(err))));
      }
      if (due < Infinity) this.revisits.set(sessionKey, due);
    }
    const made = (await Promise.all(writes)).filter(Boolean).length;
    await this.applyLateFeedback();
    return made;
  }

  /**
   * Where in the log `decide` may need to start reading for these open samples: at a sample's own
   * model.call, its run's first event or its log mark, whichever is first (the plugin sends a
   * run's events in order and tags them with its run id; a tool result may be stored before the
   * daemon has recorded the sample that called it). A sample without a run id could match a tool
   * result anywhere in its session: while one is open, the whole session is read.
   */
  private firstRelevantLog(open: OpenSample[]): number {
    const { store } = this.opts;
    let first = Infinity;
    for (const sample of open) {
      if (sample.runId === undefined) return 0;
      const callLog = sample.callId === undefined ? undefined : store.callLog(sample.sessionKey, sample.callId);
      first = Math.min(first, sample.logMark, callLog ?? Infinity, store.runStartLog(sample.sessionKey, sample.runId) ?? Infinity);
    }
    return first;
  }

  /** `toolCalls` reads the sample's calls, needed only once its results are in. */
  private decide(sample: OpenSample, events: StoredEvent[], now: number, toolCalls: () => ToolCall[]): Outcome {
    const call = sample.callId ? events.find((e) => e.kind === 'model.call' && e.callId === sample.callId) : undefined;
    const isAfter = (e: StoredEvent) => (call ? e.at > call.at && e.log > call.log : e.log > sample.logMark);
    const idleAt = sample.createdAt + this.idleMs;
    const idle = now >= idleAt;
    // The plugin named the call, so its model.call event is on the way: without it, an event
    // of this very run that is still in flight could pass for one that came after.
    if (sample.callId && !call && !idle && now - sample.createdAt < SETTLE_MS) return { undecidedUntil: sample.createdAt + SETTLE_MS };

    if (sample.toolCallIds.length > 0) {
      const ids = sample.toolCallIds;
      const results = ids
        // Of this run where both name theirs, and after this response's model.call where it is
        // known: some providers number their calls, so ids repeat across runs and across a run's
        // responses (functions.exec:0 in each).
        .map((id) => events.find((e): e is ToolResultEvent => e.kind === 'tool.result' && e.toolCallId === id && sameRun(e, sample) && (!call || e.log > call.log)))
        .filter((e) => e !== undefined)
        .map(toolResultOf);
      const ended = events.find((e) => (e.kind === 'run.end' && sample.runId !== undefined && e.runId === sample.runId) || ((e.kind === 'session.end' || e.kind === 'session.optout') && isAfter(e)));
      const graceOverAt = ended === undefined ? Infinity : Math.max(this.endSeenAt(ended.log, now), sample.createdAt) + this.toolGraceMs;
      const graceOver = now >= graceOverAt;
      const waiting = { undecidedUntil: Math.min(graceOverAt, idleAt) };
      if (results.length < ids.length && !graceOver && !idle) return waiting;
      const nextState: NextState = { toolResults: results, ...(results.length === 0 && { none: true }) };
      const actionsEnd = screenActionsEnd(toolCalls(), results);
      if (actionsEnd === undefined) return { nextState };
      // A click's effect shows in the run's next screenshot, usually asked for in the next response.
      const later = events.find((e): e is ToolResultEvent => e.kind === 'tool.result' && e.screen !== undefined && !ids.includes(e.toolCallId) && sameRun(e, sample) && (startedAtOf(e) ?? -Infinity) >= actionsEnd);
      if (later) return { nextState: { ...nextState, screenAfter: toolResultOf(later) } };
      return graceOver || idle ? { nextState } : waiting;
    }

    for (const e of events) {
      if (!isAfter(e)) continue;
      if (e.kind === 'user.message') return { nextState: { userMessage: e.content, toolResults: [] } };
      if (e.kind === 'feedback') return { nextState: { toolResults: [], feedback: feedbackOf(e) } };
      if (e.kind === 'session.end' || e.kind === 'session.optout') return { nextState: { toolResults: [], none: true } };
    }
    return idle ? { nextState: { toolResults: [], none: true } } : { undecidedUntil: idleAt };
  }

  private endSeenAt(log: number, now: number): number {
    const seenAt = this.endsSeen.get(log);
    if (seenAt !== undefined) return seenAt;
    this.endsSeen.set(log, now);
    return now;
  }

  private async writeTurn(sample: SampleRecord, nextState: NextState): Promise<boolean> {
    const { store } = this.opts;
    const turn: TurnRecord = {
      sessionKey: sample.sessionKey,
      turnIndex: sample.ordinal,
      sampleId: sample.id,
      createdAt: Date.now(),
      weightVersion: sample.weightVersion,
      action: { text: sample.text, toolCalls: sample.toolCalls },
      nextState,
      reward: null,
      hint: null,
    };
    // Checked again in the transaction: another pass (or process) may have closed it.
    const written = await store.closeSample(turn);
    if (written) this.opts.onTurn?.(turn);
    return written;
  }

  /**
   * `/clawrl good|bad|hint` refers to the last response served before it. Feedback that arrives
   * after that response became a turn is merged into the turn's (`mergeFeedback`: people change
   * their mind and add hints after a rating), which is then scored again. While that response is
   * still open, the feedback waits (open text responses take the first as their next state in
   * `decide`; merging it again here changes nothing).
   */
  private async applyLateFeedback(): Promise<void> {
    const { store } = this.opts;
    this.feedbackCursor ??= this.feedbackCursorSaved = store.mark('feedbackCursor');
    const end = store.eventLogPosition();
    // A read-only look first (the store indexes feedback events): most passes see none and should not cost a write.
    const feedback = [...store.eventsOfKind('feedback', this.feedbackCursor, end)];
    if (feedback.length === 0) {
      this.feedbackCursor = end;
      // Saved now and then, so a restarted daemon does not go over the feedback of a long stretch again at its first pass.
      if (end - this.feedbackCursorSaved >= FEEDBACK_CURSOR_SAVE_EVERY) {
        await store.setMark('feedbackCursor', end);
        this.feedbackCursorSaved = end;
      }
      return;
    }
    // Turns changed in this pass, by key: a second feedback on one turn builds on the first.
    const updated = new Map<string, TurnRecord>();
    this.feedbackCursor = await store.atomically(() => {
      for (const e of feedback) {
        // The plugin names the run the feedback is about; without it, the last response before it.
        const ofRun = e.runId === undefined ? [] : [...store.runSamplesOf(e.sessionKey, e.runId)].filter((s) => !s.side);
        let target = ofRun.at(-1);
        if (!target) {
          for (const s of store.samplesOf(e.sessionKey, { newestFirst: true })) {
            if (!s.side && s.logMark < e.log) {
              target = s;
              break;
            }
          }
        }
        if (target && store.isOpen(target.id)) {
          void store.setMark('feedbackCursor', e.log - 1);
          return e.log - 1;
        }
        const turn = target && (updated.get(`${target.sessionKey}#${target.ordinal}`) ?? store.turn([target.sessionKey, target.ordinal]));
        const merged = turn && mergeFeedback(turn.nextState.feedback, feedbackOf(e));
        if (turn && JSON.stringify(merged) !== JSON.stringify(turn.nextState.feedback)) {
          turn.nextState = { ...turn.nextState, feedback: merged };
          delete turn.nextState.none;
          store.reviseTurn(turn);
          updated.set(`${turn.sessionKey}#${turn.turnIndex}`, turn);
        }
      }
      void store.setMark('feedbackCursor', end);
      return end;
    });
    this.feedbackCursorSaved = this.feedbackCursor;
    for (const turn of updated.values()) this.opts.onTurn?.(turn);
  }
}
