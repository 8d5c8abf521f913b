// The plugin's settings: `plugins.entries.clawrl.config` in openclaw.json, over the defaults
// declared once, in openclaw.plugin.json's configSchema.
import { readFileSync } from 'node:fs';

export interface PluginConfig {
  daemonUrl: string;
  token: string;
  /** PEM file of a CA to trust for a wss:// daemon with a self-signed certificate; '' for none. */
  caFile: string;
  optInByDefault: boolean;
  notifyOnWeights: boolean;
  spoolMaxEvents: number;
  spoolMaxBytes: number;
  /** Inject relevant learned hints into the prompts of opted-in sessions. */
  hints: boolean;
  /** Also inject hints into sessions that did not opt in (nothing is learned from them). */
  hintsForAllSessions: boolean;
  hintsTopK: number;
  hintsMaxTokens: number;
  /** Send a downscaled copy of each screenshot a tool returns (off: only the measured change leaves the plugin). */
  sendScreenshots: boolean;
  screenshotMaxSide: number;
  screenshotMaxBytes: number;
}

const readJson = (file: string): unknown => JSON.parse(readFileSync(new URL(file, import.meta.url), 'utf8'));
const manifest = readJson('../openclaw.plugin.json') as { configSchema: { properties: Record<string, { default?: unknown }> } };

/** Reported to the daemon in `hello`. */
export const PLUGIN_VERSION = (readJson('../package.json') as { version: string }).version;

/** OpenClaw validates the config against the schema; a value of the wrong type still falls back. */
export function parseConfig(raw: Record<string, unknown> | undefined): PluginConfig {
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(manifest.configSchema.properties)) {
    const value = raw?.[key];
    config[key] = typeof value === typeof spec.default ? value : spec.default;
  }
  return config as unknown as PluginConfig;
}

/** The copy of each screenshot to send, or undefined when pixels stay in the plugin (the default). */
export function screenshotCopy(config: PluginConfig): { maxSide: number; maxBytes: number } | undefined {
  return config.sendScreenshots ? { maxSide: config.screenshotMaxSide, maxBytes: config.screenshotMaxBytes } : undefined;
}

/** ws://host:port/ws → http://host:port/v1 (wss → https): the daemon serves both on one port. */
export function httpBaseOf(daemonUrl: string): string {
  const url = new URL(daemonUrl);
  url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
  url.pathname = '/v1';
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/$/, '');
}

/** ws://host:port/ws → http://host:port/hints: hint memory, on the daemon's one port. */
export function hintsUrlOf(daemonUrl: string): string {
  return httpBaseOf(daemonUrl).replace(/\/v1$/, '/hints');
}
