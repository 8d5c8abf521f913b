// The `clawrl` model provider: its catalog is whatever the daemon serves (GET /v1/models), and
// every request it sends carries the session, run and model-call ids as headers, so the daemon can
// tie the exact tokens it served to the plugin's events. Stock OpenClaw sends no session header
// itself; `resolveTransportTurnState` runs right after `model_call_started` for the same sessionId,
// so the call in flight is the one being resolved.
//
// When the daemon is down, a run that would use this provider goes to the agent's first configured
// fallback model from the start (`before_model_resolve`): OpenClaw itself would first retry the
// refused connection as a transient failure for about a minute (openclaw@2026.9.6: 8 retries in a
// 90 s window) before trying the fallback.
import { isRecord, isSideTrigger, type Capture } from './capture.ts';
import { httpBaseOf, type PluginConfig } from './config.ts';
import type { ModelDefinition, ModelResolveResult, PluginLogger, ProviderPlugin, TransportTurnContext } from './host-types.ts';
import type { LinkStatus } from './link.ts';

export const PROVIDER_ID = 'clawrl';
const CATALOG_TIMEOUT_MS = 5000;
/** How long the check that the daemon is really down may take (only asked while the link is down). */
const PROBE_TIMEOUT_MS = 1000;
/** Used when the daemon does not say how long a context its model takes. */
const DEFAULT_CONTEXT_WINDOW = 32_768;
const DEFAULT_MAX_TOKENS = 4096;

/** One entry of the daemon's OpenAI-style model list, with the optional length fields servers use. */
interface ServedModel {
  id?: unknown;
  context_window?: unknown;
  context_length?: unknown;
  max_model_len?: unknown;
}

function modelDefinition(model: ServedModel): ModelDefinition | undefined {
  if (typeof model.id !== 'string' || model.id === '') return undefined;
  const window = [model.context_window, model.context_length, model.max_model_len].find((v) => typeof v === 'number' && v > 0) as
    | number
    | undefined;
  const contextWindow = window ?? DEFAULT_CONTEXT_WINDOW;
  return {
    id: model.id,
    name: model.id,
    reasoning: false,
    input: ['text'],
    cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
    contextWindow,
    maxTokens: Math.min(DEFAULT_MAX_TOKENS, contextWindow),
  };
}

/**
 * The headers of one model request; a session that has not opted in is identified by nothing.
 * `installId` names this OpenClaw install, whose session keys the daemon keeps apart from others'.
 */
export function turnHeaders(capture: Capture, ctx: TransportTurnContext, installId?: () => string): Record<string, string> {
  const track = capture.session(ctx.sessionId);
  const optedIn = capture.isOptedIn(track?.sessionKey);
  if (!optedIn) return { 'x-clawrl-opt-in': '0' };
  const headers: Record<string, string> = {
    'x-clawrl-opt-in': '1',
    'x-clawrl-side': isSideTrigger(track?.trigger) ? '1' : '0',
  };
  const ids: [string, string | undefined][] = [
    ['x-clawrl-session-key', track?.sessionKey],
    ['x-clawrl-session-id', ctx.sessionId],
    ['x-clawrl-run-id', track?.runId],
    ['x-clawrl-call-id', track?.callId],
    ['x-clawrl-turn-id', ctx.turnId],
    ['x-clawrl-install', installId?.()],
  ];
  for (const [name, value] of ids) if (typeof value === 'string' && value !== '') headers[name] = value;
  return headers;
}

export function clawrlProvider(config: PluginConfig, capture: Capture, logger: PluginLogger, installId?: () => string): ProviderPlugin {
  const baseUrl = httpBaseOf(config.daemonUrl);
  return {
    id: PROVIDER_ID,
    label: 'clawrl (learning policy)',
    auth: [],
    catalog: {
      order: 'simple',
      async run(ctx) {
        const signal = ctx.signal ? AbortSignal.any([ctx.signal, AbortSignal.timeout(CATALOG_TIMEOUT_MS)]) : AbortSignal.timeout(CATALOG_TIMEOUT_MS);
        try {
          const res = await fetch(`${baseUrl}/models`, { headers: { authorization: `Bearer ${config.token}` }, signal });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const body = (await res.json()) as { data?: ServedModel[] };
          const models = (Array.isArray(body.data) ? body.data : []).map(modelDefinition).filter((m) => m !== undefined);
          return { provider: { baseUrl, apiKey: config.token, api: 'openai-completions', models } };
        } catch (err) {
          logger.warn(`clawrl: could not list the daemon's models at ${baseUrl}/models: ${(err as Error).message}`);
          return null;
        }
      },
    },
    resolveTransportTurnState(ctx) {
      try {
        return { headers: turnHeaders(capture, ctx ?? {}, installId) };
      } catch (err) {
        // Headers are a nicety: the daemon still serves (and joins by events) without them.
        logger.warn(`clawrl: could not build turn headers: ${(err as Error).message}`);
        return undefined;
      }
    },
  };
}

/** The fallbacks of a model setting: `"provider/model"` has none, `{ primary, fallbacks }` may. */
function fallbacksOf(model: unknown): string[] | undefined {
  if (!isRecord(model) || !Array.isArray(model.fallbacks)) return undefined;
  return model.fallbacks.filter((f): f is string => typeof f === 'string');
}

/** The first configured fallback of an agent (its own list, else `agents.defaults`) that is not this provider's. */
export function fallbackModel(openclawConfig: unknown, agentId: string | undefined): { provider: string; model: string } | undefined {
  const agents = isRecord(openclawConfig) && isRecord(openclawConfig.agents) ? openclawConfig.agents : {};
  const own = agentId !== undefined && isRecord(agents.entries) && isRecord(agents.entries[agentId]) ? fallbacksOf(agents.entries[agentId].model) : undefined;
  const list = own ?? fallbacksOf(isRecord(agents.defaults) ? agents.defaults.model : undefined) ?? [];
  for (const ref of list) {
    const slash = ref.indexOf('/');
    if (slash > 0 && slash < ref.length - 1 && ref.slice(0, slash) !== PROVIDER_ID) return { provider: ref.slice(0, slash), model: ref.slice(slash + 1) };
  }
  return undefined;
}

export interface RerouteOptions {
  config: () => PluginConfig;
  /** OpenClaw's config in force (for the agent's fallbacks). */
  openclawConfig: () => unknown;
  linkStatus: () => LinkStatus | undefined;
  logger: Pick<PluginLogger, 'warn' | 'info'>;
}

/**
 * The `before_model_resolve` handler. The link says the daemon is down when it is waiting to
 * reconnect, or reconnecting after an error; a request to the daemon's model list confirms it
 * (the daemon may be back before the link's next try). A link that never tried (a fresh
 * one-shot process) says nothing, and the run goes to the daemon as configured.
 */
export function rerouteWhenDaemonDown(opts: RerouteOptions) {
  let rerouting = false;
  return async (_event: unknown, rawCtx: unknown): Promise<ModelResolveResult | undefined> => {
    try {
      const ctx = isRecord(rawCtx) ? rawCtx : {};
      if (ctx.modelProviderId !== PROVIDER_ID) return undefined;
      const link = opts.linkStatus();
      const looksDown = link !== undefined && (link.state === 'waiting' || (link.state === 'connecting' && link.lastError !== undefined));
      if (!looksDown || (await daemonAnswers(opts.config()))) {
        rerouting = false;
        return undefined;
      }
      const fallback = fallbackModel(opts.openclawConfig(), typeof ctx.agentId === 'string' ? ctx.agentId : undefined);
      if (!fallback) return undefined;
      // Logged when rerouting starts, not for every run while the daemon stays down.
      if (!rerouting) opts.logger.warn(`clawrl: the daemon is unreachable (${link.lastError ?? link.state}); runs use the fallback ${fallback.provider}/${fallback.model} until it is back`);
      rerouting = true;
      return { providerOverride: fallback.provider, modelOverride: fallback.model };
    } catch (err) {
      opts.logger.warn(`clawrl: before_model_resolve failed: ${(err as Error).message}`);
      return undefined;
    }
  };
}

/** Whether the daemon's `/v1/models` answers at all (any HTTP status) within PROBE_TIMEOUT_MS. */
async function daemonAnswers(config: PluginConfig): Promise<boolean> {
  try {
    const res = await fetch(`${httpBaseOf(config.daemonUrl)}/models`, { headers: { authorization: `Bearer ${config.token}` }, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}
