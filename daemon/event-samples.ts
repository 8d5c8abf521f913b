// Samples from the plugin's events, for runs the daemon did not serve. In hints mode (and for any
// run whose model is not the daemon's) the agent talks to its own hosted model, so no served sample
// exists; the run's `model.output` event (OpenClaw's llm_output: once per run, with the run's
// assistant texts and the tool calls of its last message) stands in for one. Such a sample carries
// the run's user message as its request, its texts and tool calls as the action, and no tokens:
// TurnAssembler and ScoringLoop treat it like any other (its next state comes from later events),
// and with no response tokens it is never trainable.
import type { Store, StoredEvent } from './store.ts';

/** Marks a sample that the daemon's policy did not produce. */
export const EXTERNAL_WEIGHT_VERSION = 'external';

/**
 * model.output events read per slice of a pass. A pass over a large backlog (a restart after a
 * burst) saves its place after each slice and lets the event loop run between slices, and no
 * read transaction stays open across a slice's writes (one held open keeps LMDB from reusing
 * freed pages, and the file grows).
 */
const OUTPUTS_PER_SLICE = 500;

/** Its passes run on a Loop of the pipeline (pipeline.ts), before turn assembly. */
export class EventSamples {
  /** Event log position up to which model.output events have been looked at. */
  private cursor?: number;

  constructor(private readonly store: Store) {}

  /** Records a sample for every model.output since the last pass whose run the daemon did not serve. */
  async deriveOnce(): Promise<number> {
    const { store } = this;
    // A served response of one of these runs may still be on its way into the store.
    await store.samplesRecorded();
    let cursor = (this.cursor ??= store.mark('eventSamplesCursor'));
    let made = 0;
    // Up to where the log was when the pass began: events stored meanwhile are the next pass's.
    const end = store.eventLogPosition();
    while (cursor < end) {
      // The store indexes model.output events: the rest of the log is not read.
      const outputs = [...store.eventsOfKind('model.output', cursor, end, OUTPUTS_PER_SLICE)];
      const through = outputs.length === OUTPUTS_PER_SLICE ? outputs.at(-1)!.log : end;
      // A slice's samples are written together (LMDB commits them in one or a few transactions,
      // where awaiting each made a durable commit per sample, far slower than ingest). Their
      // checks read what is committed, so a run is taken once per slice here.
      const runs = new Set<string>();
      const writes = outputs.map((output) => this.derive(output, runs));
      made += (await Promise.all(writes)).filter(Boolean).length;
      // Saved only past outputs, so that a restart does not take them again; a stretch without
      // any is found empty again through the index at no cost. Saving after every pass cost a
      // durable commit per stored batch, beside the batch's own.
      if (outputs.length > 0) await store.setMark('eventSamplesCursor', through);
      this.cursor = cursor = through;
      if (through < end) await new Promise((resolve) => setImmediate(resolve));
    }
    return made;
  }

  /** Checks synchronously, then records; `runs` holds the runs of this slice taken so far. */
  private async derive(output: Extract<StoredEvent, { kind: 'model.output' }>, runs: Set<string>): Promise<boolean> {
    const { store } = this;
    // Without a run id there is no telling whether the daemon served the run; a duplicate turn
    // would be worse than a missing one.
    if (output.runId === undefined) return false;
    const id = `event:${output.clientId}:${output.seq}`;
    if (store.sample(id) !== undefined) return false;
    const runKey = `${output.sessionKey}\u0000${output.runId}`;
    if (runs.has(runKey) || store.hasRunSamples(output.sessionKey, output.runId)) return false;
    runs.add(runKey);
    const text = output.assistantTexts.join('\n\n');
    if (text === '' && output.toolCalls.length === 0) return false;
    const run = [...store.runEventsOf(output.sessionKey, output.runId)];
    const call = run.find((e) => e.kind === 'model.call');
    const user = run.find((e) => e.kind === 'user.message');
    await store.recordSample({
      id,
      sessionKey: output.sessionKey,
      sessionId: output.sessionId,
      runId: output.runId,
      side: call?.side ?? false,
      createdAt: Date.now(),
      model: call?.model ?? '',
      weightVersion: EXTERNAL_WEIGHT_VERSION,
      requestMessages: user ? [{ role: 'user', content: user.content }] : [],
      promptTokens: [],
      responseTokens: [],
      logprobs: [],
      text,
      toolCalls: output.toolCalls,
      finishReason: output.toolCalls.length > 0 ? 'tool_calls' : 'stop',
      // What follows the output event is the run's next state, however late this pass runs.
      logMark: output.log,
    });
    return true;
  }
}
