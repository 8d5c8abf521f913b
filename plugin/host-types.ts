// The parts of OpenClaw's plugin API this plugin uses, declared locally: `openclaw` is not a
// dependency of this package (it is ~650 MB and runs the plugin, not the other way round).
// Names follow openclaw@2026.9.6 `dist/plugin-sdk` (OpenClawPluginApi, PluginHookHandlerMap,
// ProviderPlugin, OpenClawPluginService, OpenClawPluginCommandDefinition). Every payload field is
// optional here on purpose: the handlers treat what the host passes as untrusted input.

export interface PluginLogger {
  debug?: (message: string) => void;
  info: (message: string) => void;
  warn: (message: string) => void;
  error: (message: string) => void;
}

/** PluginHookAgentContext / PluginHookToolContext / PluginHookSessionContext, merged. */
export interface HookContext {
  runId?: string;
  agentId?: string;
  sessionKey?: string;
  sessionId?: string;
  /** 'user' for main turns; 'heartbeat', 'cron', 'memory', ... for side turns. */
  trigger?: string;
  toolName?: string;
  toolCallId?: string;
}

/** PluginHookBeforeAgentRunEvent: `prompt` is the message that started the run (no envelope). */
export interface BeforeAgentRunEvent {
  prompt?: string;
}

export interface ModelCallEvent {
  runId?: string;
  callId?: string;
  sessionKey?: string;
  sessionId?: string;
  provider?: string;
  model?: string;
  /** model_call_ended: 'completed' or 'error'. */
  outcome?: string;
}

export interface LlmOutputEvent {
  runId?: string;
  sessionId?: string;
  assistantTexts?: unknown;
  lastAssistant?: unknown;
  usage?: { input?: number; output?: number; total?: number };
}

export interface AfterToolCallEvent {
  toolName?: string;
  params?: unknown;
  runId?: string;
  toolCallId?: string;
  result?: unknown;
  error?: string;
  durationMs?: number;
}

/** In a gateway it comes before the run it starts, without a run id; command messages fire it too. */
export interface MessageReceivedEvent {
  from?: string;
  content?: string;
  sessionKey?: string;
}

export interface AgentEndEvent {
  runId?: string;
  success?: boolean;
  error?: string;
  durationMs?: number;
}

export interface SessionStartEvent {
  sessionId?: string;
  sessionKey?: string;
}

export interface SessionEndEvent {
  sessionId?: string;
  sessionKey?: string;
  reason?: string;
}

/** PluginHookBeforePromptBuildEvent. */
export interface BeforePromptBuildEvent {
  prompt?: string;
  /** The current request before history and context are projected in; '' means no text. */
  currentUserMessage?: string;
  messages?: unknown[];
}

/** PluginHookBeforePromptBuildResult, the field this plugin returns. */
export interface PromptBuildResult {
  prependContext?: string;
}

/** PluginHookBeforeModelResolveResult: the provider and model this run uses instead. */
export interface ModelResolveResult {
  providerOverride?: string;
  modelOverride?: string;
}

/** PluginHookReplyPayloadSendingEvent, the fields used here. */
export interface ReplyPayloadSendingEvent {
  payload?: { text?: string; isError?: boolean; [field: string]: unknown };
  sessionKey?: string;
  /** Present on replies of an agent run (not on command replies): who answered. */
  usageState?: { provider?: string; model?: string };
}

/** PluginHookReplyPayloadSendingResult: the payload delivered instead. */
export interface ReplyPayloadSendingResult {
  payload?: ReplyPayloadSendingEvent['payload'];
}

/** The hooks this plugin registers: observe hooks as `(event, ctx) => void`, and the prompt hook. */
export interface HookHandlers {
  before_agent_run: (event: BeforeAgentRunEvent, ctx: HookContext) => void;
  model_call_started: (event: ModelCallEvent, ctx: HookContext) => void;
  model_call_ended: (event: ModelCallEvent, ctx: HookContext) => void;
  llm_output: (event: LlmOutputEvent, ctx: HookContext) => void;
  after_tool_call: (event: AfterToolCallEvent, ctx: HookContext) => void;
  message_received: (event: MessageReceivedEvent, ctx: HookContext) => void;
  agent_end: (event: AgentEndEvent, ctx: HookContext) => void;
  session_start: (event: SessionStartEvent, ctx: HookContext) => void;
  session_end: (event: SessionEndEvent, ctx: HookContext) => void;
  before_prompt_build: (event: BeforePromptBuildEvent, ctx: unknown) => Promise<PromptBuildResult | undefined>;
  before_model_resolve: (event: unknown, ctx: unknown) => Promise<ModelResolveResult | undefined>;
  reply_payload_sending: (event: ReplyPayloadSendingEvent, ctx: unknown) => ReplyPayloadSendingResult | undefined;
}

export type HookName = keyof HookHandlers;

/** ProviderResolveTransportTurnStateContext. */
export interface TransportTurnContext {
  provider?: string;
  modelId?: string;
  sessionId?: string;
  turnId?: string;
  attempt?: number;
  transport?: string;
}

/** ModelDefinitionConfig (the fields a custom OpenAI-compatible provider needs). */
export interface ModelDefinition {
  id: string;
  name: string;
  reasoning: boolean;
  input: string[];
  cost: { input: number; output: number; cacheRead: number; cacheWrite: number };
  contextWindow: number;
  maxTokens: number;
}

/** ModelProviderConfig. */
export interface ModelProviderConfig {
  baseUrl: string;
  apiKey?: string;
  api: string;
  models: ModelDefinition[];
}

/** ProviderPlugin, the fields used here. */
export interface ProviderPlugin {
  id: string;
  label: string;
  auth: unknown[];
  catalog?: {
    order?: 'simple' | 'profile' | 'paired' | 'late';
    run: (ctx: { signal?: AbortSignal }) => Promise<{ provider: ModelProviderConfig } | null | undefined>;
  };
  resolveTransportTurnState?: (ctx: TransportTurnContext) => { headers?: Record<string, string> } | null | undefined;
}

/** PluginCommandContext, the fields used here. */
export interface CommandContext {
  sessionKey?: string;
  sessionId?: string;
  args?: string;
  commandBody?: string;
}

/** PluginCommandResult is a ReplyPayload; a text reply is all this plugin sends. */
export interface CommandResult {
  text: string;
}

export interface CommandDefinition {
  name: string;
  description: string;
  acceptsArgs?: boolean;
  handler: (ctx: CommandContext) => CommandResult | Promise<CommandResult>;
}

/** OpenClawPluginServiceContext, the fields used here. */
export interface ServiceContext {
  stateDir: string;
  logger: PluginLogger;
}

export interface ServiceDefinition {
  id: string;
  start: (ctx: ServiceContext) => void | Promise<void>;
  stop?: (ctx: ServiceContext) => void | Promise<void>;
}

/** OpenClawPluginApi, the members used here. `runtime` parts may be missing on other hosts. */
export interface PluginApi {
  id: string;
  pluginConfig?: Record<string, unknown>;
  logger: PluginLogger;
  /** openclaw.json as loaded (`runtime.config.current()` has the live one after a reload). */
  config?: unknown;
  runtime?: {
    state?: { resolveStateDir?: (env?: NodeJS.ProcessEnv) => string };
    config?: { current?: () => unknown };
  };
  on<K extends HookName>(hookName: K, handler: HookHandlers[K]): void;
  registerProvider(provider: ProviderPlugin): void;
  registerCommand(command: CommandDefinition): void;
  registerService(service: ServiceDefinition): void;
}

/** What `definePluginEntry` returns: OpenClaw loads the module's default export of this shape. */
export interface PluginEntry {
  id: string;
  name: string;
  description: string;
  register(api: PluginApi): void;
}
