// Serving at scale: an upstream server (vLLM, SGLang) serves, a training backend (the torch
// worker) trains. Samples keep the server's token ids and logprobs; the trainer's adapters are
// hot-loaded into the server as they are published. Both must run the same base model.
import type { Logger } from '../log.ts';
import type { ChatMessage, GenerateChunk, GenerateRequest, GenerateResult, ServingBackend, ToolSpec, TrainExample, TrainingBackend, TrainOptions } from './types.ts';

const PROBE: ChatMessage[] = [{ role: 'user', content: 'Say OK.' }];

export class SplitBackend implements TrainingBackend {
  readonly name: string;
  /** The trainer's stats (GPU memory, throughput) for /metrics, where it reports them. */
  readonly stats?: () => Promise<unknown>;
  /** A canary adapter beside the served one: the serving side's, where it has one (upstream does). */
  readonly loadCanary?: ServingBackend['loadCanary'];

  private constructor(
    readonly serving: ServingBackend,
    readonly training: TrainingBackend,
  ) {
    this.name = `${serving.name}+${training.name}`;
    const reporting = training as { stats?: () => Promise<unknown> };
    this.stats = reporting.stats?.bind(training);
    this.loadCanary = serving.loadCanary?.bind(serving);
  }

  /**
   * Checks that both sides tokenize a chat alike: the trainer learns from the server's token ids,
   * so a different base model behind the server would train on ids that mean other text.
   */
  static async create(serving: ServingBackend, training: TrainingBackend, log?: Logger): Promise<SplitBackend> {
    const served = await serving.generate({ messages: PROBE, sampling: { temperature: 0, topP: 1, maxTokens: 1, stop: [], topLogprobs: 0 } });
    if (served.promptTokens.length === 0) {
      log?.warn('the upstream server returns no token ids (vLLM does, with return_token_ids): its replies cannot be trained on');
    } else {
      const own = await training.encodeChat(PROBE);
      if (own.length !== served.promptTokens.length || own.some((id, i) => id !== served.promptTokens[i])) {
        throw new Error(
          `the upstream model (${serving.models().join(', ')}) tokenizes a chat differently from the training model: ` +
            `[${served.promptTokens.slice(0, 12).join(', ')}${served.promptTokens.length > 12 ? ', …' : ''}] vs ` +
            `[${own.slice(0, 12).join(', ')}${own.length > 12 ? ', …' : ''}]; serve and train the same base model`,
        );
      }
    }
    return new SplitBackend(serving, training);
  }

  models(): string[] {
    return this.serving.models();
  }

  currentVersion(): string {
    return this.serving.currentVersion();
  }

  generate(req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult> {
    return this.serving.generate(req, onChunk);
  }

  encodeChat(messages: ChatMessage[], tools?: ToolSpec[]): Promise<number[]> {
    return this.training.encodeChat(messages, tools);
  }

  /** With reference: false this is the trainer's serving slot, the base model here: callers ask for the reference. */
  score(promptTokens: number[], responseTokens: number[], opts?: { reference?: boolean }): Promise<number[]> {
    return this.training.score(promptTokens, responseTokens, opts);
  }

  trainStep(batch: TrainExample[], opts: TrainOptions) {
    return this.training.trainStep(batch, opts);
  }

  saveAdapter(dir: string): Promise<void> {
    return this.training.saveAdapter(dir);
  }

  /** The served adapter lives at the server; the trainer's own serving slot stays unused. */
  loadAdapter(dir: string | null, version: string): Promise<void> {
    return this.serving.loadAdapter(dir, version);
  }

  loadTrainingAdapter(dir: string | null): Promise<void> {
    return this.training.loadTrainingAdapter(dir);
  }

  async close(): Promise<void> {
    await Promise.all([this.serving.close(), this.training.close()]);
  }
}
