// The openclaw.json fragment the daemon prints for OpenClaw, and its merge into a user's file.
import { strict as assert } from 'node:assert';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { mergeOpenclawConfig, openclawConfigFragment } from '../daemon/openclaw-config.ts';
import { runCli, spawnDaemon, tempDir } from './helpers.ts';

test('the fragment defines the provider, enables the plugin with conversation access, and can pick the model', () => {
  const fragment = openclawConfigFragment({
    daemonHttpUrl: 'http://127.0.0.1:7077',
    token: 'tok',
    models: ['policy', { id: 'small', contextWindow: 2048 }],
    pluginDir: '/opt/clawrl',
    primaryModel: 'policy',
  });
  assert.deepEqual(fragment, {
    models: {
      providers: {
        clawrl: {
          baseUrl: 'http://127.0.0.1:7077/v1',
          apiKey: 'tok',
          api: 'openai-completions',
          models: [
            { id: 'policy', name: 'policy', reasoning: false, input: ['text'], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 32768, maxTokens: 4096 },
            { id: 'small', name: 'small', reasoning: false, input: ['text'], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 2048, maxTokens: 2048 },
          ],
        },
      },
    },
    plugins: {
      entries: { clawrl: { enabled: true, config: { daemonUrl: 'ws://127.0.0.1:7077/ws', token: 'tok' }, hooks: { allowConversationAccess: true, allowPromptInjection: true } } },
      load: { paths: ['/opt/clawrl'] },
    },
    agents: { defaults: { model: { primary: 'clawrl/policy' } } },
  });
  assert.throws(() => openclawConfigFragment({ daemonHttpUrl: 'http://h:1', token: 't', models: ['a'], primaryModel: 'b' }), /not among/);
  const tls = openclawConfigFragment({ daemonHttpUrl: 'https://gpu.example:8443/', token: 't', models: [] });
  assert.equal((tls.plugins as { entries: { clawrl: { config: { daemonUrl: string } } } }).entries.clawrl.config.daemonUrl, 'wss://gpu.example:8443/ws');
});

test('for a daemon in hints mode: the plugin entry alone, from the running daemon or --hints-only', async (t) => {
  assert.equal(openclawConfigFragment({ daemonHttpUrl: 'http://h:1', token: 't', models: [] }).models, undefined);
  const dataDir = tempDir();
  const daemon = await spawnDaemon(dataDir, ['--mode', 'hints']);
  t.after(() => daemon.stop());
  const printed = await runCli(dataDir, ['openclaw-config']);
  assert.equal(printed.code, 0, printed.stderr);
  const fragment = JSON.parse(printed.stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(fragment), ['plugins']);
  const refused = await runCli(dataDir, ['openclaw-config', '--primary']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /in hints mode the daemon serves no model/);
  await daemon.stop();
  // No daemon running: --hints-only says what the fragment is for.
  const offline = await runCli(dataDir, ['openclaw-config', '--hints-only']);
  assert.deepEqual(Object.keys(JSON.parse(offline.stdout) as object), ['plugins']);
  assert.match((await runCli(dataDir, ['openclaw-config'])).stderr, /no running daemon to ask for its models.*--hints-only/);
});

test('merging keeps the user settings, replaces the model list, adds to path lists, and writes atomically', () => {
  const dir = tempDir('clawrl-occonfig-');
  const file = join(dir, 'openclaw.json');
  writeFileSync(
    file,
    JSON.stringify({
      models: { providers: { openai: { baseUrl: 'https://api.openai.com/v1' }, clawrl: { baseUrl: 'http://old/v1', models: [{ id: 'stale' }], timeoutSeconds: 30 } } },
      plugins: { load: { paths: ['/other/plugin'] }, entries: { clawrl: { config: { notifyOnWeights: true } }, memory: { enabled: true } } },
      agents: { defaults: { model: { primary: 'openai/gpt-5', fallbacks: ['x/y'] } } },
      gateway: { port: 18789 },
    }),
    { mode: 0o640 },
  );
  const fragment = openclawConfigFragment({ daemonHttpUrl: 'http://127.0.0.1:7077', token: 'tok', models: ['policy'], pluginDir: '/opt/clawrl', primaryModel: 'policy' });
  mergeOpenclawConfig(file, fragment);
  const merged = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(merged.gateway.port, 18789);
  assert.equal(merged.models.providers.openai.baseUrl, 'https://api.openai.com/v1');
  assert.equal(merged.models.providers.clawrl.timeoutSeconds, 30);
  assert.equal(merged.models.providers.clawrl.baseUrl, 'http://127.0.0.1:7077/v1');
  assert.deepEqual(merged.models.providers.clawrl.models.map((m: { id: string }) => m.id), ['policy']);
  assert.deepEqual(merged.plugins.load.paths, ['/other/plugin', '/opt/clawrl']);
  assert.deepEqual(merged.plugins.entries.memory, { enabled: true });
  assert.deepEqual(merged.plugins.entries.clawrl, { config: { notifyOnWeights: true, daemonUrl: 'ws://127.0.0.1:7077/ws', token: 'tok' }, enabled: true, hooks: { allowConversationAccess: true, allowPromptInjection: true } });
  assert.deepEqual(merged.agents.defaults.model, { primary: 'clawrl/policy', fallbacks: ['x/y'] });
  assert.equal(statSync(file).mode & 0o777, 0o640);
  assert.deepEqual(readdirSync(dir), ['openclaw.json']);

  // Merging twice changes nothing more; a missing file is created.
  mergeOpenclawConfig(file, fragment);
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), merged);
  const fresh = join(dir, 'new.json');
  assert.deepEqual(mergeOpenclawConfig(fresh, fragment), fragment);
});

test('a JSON5 openclaw.json is refused rather than rewritten without its comments', () => {
  const file = join(tempDir('clawrl-occonfig-'), 'openclaw.json');
  const json5 = '{\n  // my gateway\n  gateway: { port: 1 },\n}\n';
  writeFileSync(file, json5);
  assert.throws(() => mergeOpenclawConfig(file, { a: 1 }), /not plain JSON/);
  assert.equal(readFileSync(file, 'utf8'), json5);
});
