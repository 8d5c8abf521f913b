// The openclaw.json fragment that points OpenClaw at this daemon (`clawrl-daemon openclaw-config`),
// and a merge into an existing openclaw.json that keeps everything else the user set.
//
// OpenClaw needs the provider in its config, not only in the plugin's catalog: a model that
// exists only through a plugin catalog is refused as "Unknown model" until
// `openclaw models list --refresh` (seen with openclaw@2026.9.6). Conversation hooks
// (llm_input, llm_output, agent_end, before_agent_run) run only with
// `plugins.entries.clawrl.hooks.allowConversationAccess: true`; hint memory's `before_prompt_build`
// needs that and `allowPromptInjection` (allowed unless false; set explicitly so a stricter default
// elsewhere in the user's config does not silently switch hints off).
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { errorMessage } from './errors.ts';

export interface OpenclawModel {
  id: string;
  /** Context length the model serves; OpenClaw budgets prompts with it. */
  contextWindow?: number;
}

export interface OpenclawConfigOptions {
  /** http://host:port of the daemon (no path). */
  daemonHttpUrl: string;
  token: string;
  /** The daemon's models; none for a daemon in hints mode (the agent keeps its own model). */
  models: (string | OpenclawModel)[];
  /** A checkout of this package to load the plugin from (what `plugins install --link` records). */
  pluginDir?: string;
  /** Make this model (an id from `models`) the agents' default. */
  primaryModel?: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const DEFAULT_CONTEXT_WINDOW = 32_768;
const DEFAULT_MAX_TOKENS = 4096;

function modelEntry(model: string | OpenclawModel): JsonObject {
  const { id, contextWindow = DEFAULT_CONTEXT_WINDOW } = typeof model === 'string' ? { id: model } : model;
  return {
    id,
    name: id,
    reasoning: false,
    input: ['text'],
    cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 },
    contextWindow,
    maxTokens: Math.min(DEFAULT_MAX_TOKENS, contextWindow),
  };
}

export function openclawConfigFragment(opts: OpenclawConfigOptions): JsonObject {
  const http = new URL(opts.daemonHttpUrl);
  const base = `${http.protocol}//${http.host}`;
  const ws = `${http.protocol === 'https:' ? 'wss' : 'ws'}://${http.host}/ws`;
  const fragment: JsonObject = {
    ...(opts.models.length > 0 && {
      models: {
        providers: {
          clawrl: { baseUrl: `${base}/v1`, apiKey: opts.token, api: 'openai-completions', models: opts.models.map(modelEntry) },
        },
      },
    }),
    plugins: {
      entries: {
        clawrl: {
          enabled: true,
          config: { daemonUrl: ws, token: opts.token },
          hooks: { allowConversationAccess: true, allowPromptInjection: true },
        },
      },
      ...(opts.pluginDir ? { load: { paths: [opts.pluginDir] } } : {}),
    },
  };
  if (opts.primaryModel) {
    const known = opts.models.some((m) => (typeof m === 'string' ? m : m.id) === opts.primaryModel);
    if (!known) throw new Error(`primary model ${opts.primaryModel} is not among the daemon's models`);
    fragment.agents = { defaults: { model: { primary: `clawrl/${opts.primaryModel}` } } };
  }
  return fragment;
}

function isObject(value: Json | undefined): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Deep merge: objects merge key by key; a list of plain values (like `plugins.load.paths`) gains
 * the fragment's values it lacks; anything else (a model list, a scalar) is the fragment's.
 */
export function mergeJson(target: Json | undefined, fragment: Json): Json {
  if (isObject(target) && isObject(fragment)) {
    const out: JsonObject = { ...target };
    for (const [key, value] of Object.entries(fragment)) out[key] = mergeJson(target[key], value);
    return out;
  }
  const plain = (list: Json[]) => list.every((v) => v === null || typeof v !== 'object');
  if (Array.isArray(target) && Array.isArray(fragment) && plain(target) && plain(fragment)) {
    return [...target, ...fragment.filter((v) => !target.includes(v))];
  }
  return fragment;
}

/** Merges the fragment into `file` (created if missing), atomically; returns the merged config. */
export function mergeOpenclawConfig(file: string, fragment: JsonObject): JsonObject {
  let current: Json = {};
  let mode = 0o600;
  if (existsSync(file)) {
    mode = statSync(file).mode & 0o777;
    const text = readFileSync(file, 'utf8');
    try {
      current = text.trim() === '' ? {} : (JSON.parse(text) as Json);
    } catch (err) {
      // openclaw.json may be JSON5 (comments, trailing commas); rewriting it would lose those.
      throw new Error(`${file} is not plain JSON (${errorMessage(err)}); merge the fragment by hand or with \`openclaw config set\``, { cause: err });
    }
    if (!isObject(current)) throw new Error(`${file} does not hold a JSON object`);
  }
  const merged = mergeJson(current, fragment) as JsonObject;
  const tmp = `${file}.clawrl-${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(merged, null, 2) + '\n', { mode, flush: true });
  renameSync(tmp, file);
  return merged;
}
