// A fake of OpenClaw's plugin api for tests that drive the plugin entry's register(): it records
// what the plugin registers, so a test can call the hooks and commands as the host would.
import type { CommandDefinition, HookName, PluginApi, ProviderPlugin, ServiceDefinition } from '../plugin/host-types.ts';
import { tempDir } from './helpers.ts';

export function fakeApi(pluginConfig: Record<string, unknown>, stateRoot = tempDir('clawrl-plugin-state-')) {
  const hooks = new Map<string, (event: unknown, ctx: unknown) => unknown>();
  const recorded = { providers: [] as ProviderPlugin[], commands: [] as CommandDefinition[], services: [] as ServiceDefinition[], warnings: [] as string[] };
  const api: PluginApi = {
    id: 'clawrl',
    pluginConfig,
    logger: { info() {}, warn: (m) => void recorded.warnings.push(m), error() {} },
    runtime: { state: { resolveStateDir: () => stateRoot } },
    on: (name: HookName, handler: unknown) => void hooks.set(name, handler as (event: unknown, ctx: unknown) => unknown),
    registerProvider: (p) => void recorded.providers.push(p),
    registerCommand: (c) => void recorded.commands.push(c),
    registerService: (s) => void recorded.services.push(s),
  };
  return { api, hooks, recorded };
}
