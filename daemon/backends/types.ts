// The contract every policy backend meets (embedded CPU model, torch worker, upstream server).
// The daemon composes backends with recipes: a backend trains on the per-token advantages it
// is given and knows nothing of how they were decided.
import type { TrainOptions } from '../../recipes/types.ts';

export type { TrainOptions } from '../../recipes/types.ts';

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text, as OpenAI's `function.arguments`. */
  arguments: string;
}

/** One chat message, normalised by the API layer (content parts joined into text). */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  name?: string;
  toolCalls?: ToolCall[];
  toolCallId?: string;
}

export interface ToolSpec {
  name: string;
  description?: string;
  /** JSON schema of the arguments. */
  parameters?: unknown;
}

export interface SamplingParams {
  temperature: number;
  topP: number;
  maxTokens: number;
  stop: string[];
  seed?: number;
  /** How many alternatives to report per token (OpenAI `top_logprobs`), 0 for none. */
  topLogprobs: number;
}

export interface GenerateRequest {
  messages: ChatMessage[];
  tools?: ToolSpec[];
  sampling: SamplingParams;
  signal?: AbortSignal;
  /**
   * OpenAI request fields the daemon does not model (tool_choice, response_format, …): a
   * backend that forwards to another OpenAI-compatible server passes them on verbatim.
   */
  passthrough?: Record<string, unknown>;
  /** Serve this request with the canary adapter (see `loadCanary`) when one is loaded. */
  canary?: boolean;
}

export interface TokenLogprob {
  token: number;
  /** The token's text; may be a partial UTF-8 sequence for byte-level tokenizers. */
  text: string;
  logprob: number;
  top?: { token: number; text: string; logprob: number }[];
}

/** A piece of a streamed generation. */
export interface GenerateChunk {
  text: string;
  tokens: TokenLogprob[];
}

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface GenerateResult {
  /** Exactly the token ids the policy was conditioned on (after any truncation). */
  promptTokens: number[];
  /** Exactly the token ids sampled; never re-tokenised. */
  responseTokens: number[];
  /** log π(y_t | prompt, y_<t) of each response token, as sampled. */
  logprobs: number[];
  tokens: TokenLogprob[];
  text: string;
  toolCalls: ToolCall[];
  finishReason: FinishReason;
  /** The weight version that generated this response. */
  weightVersion: string;
  /** True when the prompt was longer than the context and was cut. */
  promptTruncated: boolean;
}

/** One response to train on: tokens as generated, with the recipe's advantages. */
export interface TrainExample {
  promptTokens: number[];
  responseTokens: number[];
  /** Logprobs recorded at generation (π_old). */
  oldLogprobs: number[];
  /** A_t per response token. */
  advantages: number[];
  /** 1 = train on this token, 0 = masked out. Defaults to all ones. */
  mask?: number[];
}

export interface TrainMetrics {
  loss: number;
  /** Fraction of trained tokens whose ratio was clipped. */
  clipFraction: number;
  meanRatio: number;
  /** Mean (log π_θ − log π_ref) over trained tokens; 0 when klCoef is 0. */
  kl: number;
  gradNorm: number;
  tokens: number;
  durationMs: number;
}

/** The backend cannot answer now (its worker is down or restarting); the API answers 503. */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

/** The server behind a backend (upstream) refused or broke off; the API answers with `status`. */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Serving: what /v1 needs, and swapping the served adapter between requests. */
export interface ServingBackend {
  readonly name: string;
  /** Model ids served under /v1/models. */
  models(): string[];
  /** The weight version now serving ('base' before any update). */
  currentVersion(): string;
  /** Generate a reply; `onChunk` receives the reply as it is sampled. */
  generate(req: GenerateRequest, onChunk?: (chunk: GenerateChunk) => void): Promise<GenerateResult>;
  /** Swap the served adapter between requests; `dir` null serves the base weights. */
  loadAdapter(dir: string | null, version: string): Promise<void>;
  /**
   * Loads a second adapter served beside the current one, to requests that ask for it (`canary`),
   * for a canary rollout; null removes it. Absent where a backend serves one version at a time
   * (torch): a new version then serves all requests at once.
   */
  loadCanary?(dir: string | null, version: string | null): Promise<void>;
  close(): Promise<void>;
}

/**
 * A backend that also trains: it tokenizes and scores given tokens with its own weights (OPD's
 * teacher, the guard's drift) and keeps a training copy of the adapter that steps never serve
 * until `loadAdapter`.
 */
export interface TrainingBackend extends ServingBackend {
  /** The prompt token ids `generate` would condition on for these messages. */
  encodeChat(messages: ChatMessage[], tools?: ToolSpec[]): Promise<number[]>;
  /**
   * log π(response_t | prompt, response_<t) for given tokens. `reference` scores with the frozen
   * base weights (no adapter): the OPD teacher and the KL reference.
   */
  score(promptTokens: number[], responseTokens: number[], opts?: { reference?: boolean }): Promise<number[]>;
  /** One optimiser step on the training copy of the adapter; serving is unaffected until `loadAdapter`. */
  trainStep(batch: TrainExample[], opts: TrainOptions): Promise<TrainMetrics>;
  /** Write the training copy of the adapter in PEFT layout (adapter_config.json + adapter_model.safetensors). */
  saveAdapter(dir: string): Promise<void>;
  /** Reset the training copy (weights and optimiser state) to an adapter, e.g. after a rollback. */
  loadTrainingAdapter(dir: string | null): Promise<void>;
}

/** What the daemon is given: a backend that serves only (upstream alone), or one that also trains. */
export type Backend = ServingBackend | TrainingBackend;

export function canTrain(backend: Backend | undefined): backend is TrainingBackend {
  return backend !== undefined && 'trainStep' in backend;
}
