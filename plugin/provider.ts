// The `clawrl` model provider: its catalog is whatever the daemon serves (GET /v1/models), and
// every request it sends carries the session, run and model-call ids as headers, so the daemon can
// tie the exact tokens it served to the plugin's events. Stock OpenClaw sends no session header
// itself; `resolveTransportTurnState` runs right after `model_call_started` for the same sessionId,
// so the call in flight is the one being resolved.
import { isSideTrigger, type Capture } from './capture.ts';
import { httpBaseOf, type PluginConfig } from './config.ts';
import type { ModelDefinition, PluginLogger, ProviderPlugin, TransportTurnContext } from './host-types.ts';

const PROVIDER_ID = 'clawrl';
const CATALOG_TIMEOUT_MS = 5000;
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

/** The headers of one model request; a session that has not opted in is identified by nothing. */
export function turnHeaders(capture: Capture, ctx: TransportTurnContext): Record<string, string> {
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
  ];
  for (const [name, value] of ids) if (typeof value === 'string' && value !== '') headers[name] = value;
  return headers;
}

export function clawrlProvider(config: PluginConfig, capture: Capture, logger: PluginLogger): ProviderPlugin {
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
        return { headers: turnHeaders(capture, ctx ?? {}) };
      } catch (err) {
        // Headers are a nicety: the daemon still serves (and joins by events) without them.
        logger.warn(`clawrl: could not build turn headers: ${(err as Error).message}`);
        return undefined;
      }
    },
  };
}
