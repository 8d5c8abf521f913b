// `clawrl-daemon`: start/stop the daemon and look at what it stored.
import { Command, Option } from 'commander';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from './server.ts';
import type { DaemonMode } from './types.ts';
import { toExportedTurn, type WeightVersionRecord } from './store.ts';
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  ensureDataDir,
  isProcessAlive,
  loadOrCreateToken,
  readRuntimeInfo,
  rotateToken,
  secureDataDir,
  writeRuntimeInfo,
} from './config.ts';
import { createLogger, guardOutput, type Level, type Logger } from './log.ts';
import { callDaemon, dataDir, fail, numberArg, requireDaemon, runningDaemonUrl, setDataDirFlag, withStore } from './cli-common.ts';
import { progress } from './progress.ts';
import type { Backend } from './backends/types.ts';
import type { JudgeConfig } from './scoring.ts';
import { recipes, type RecipeName } from '../recipes/index.ts';
import { setCustomPatterns } from './redact.ts';
import { registerHintCommands } from './cli-hints.ts';
import { HealthReader, describeHealth } from './health.ts';
import type { WeightsListing } from './control.ts';
import { DEFAULT_CANARY_SHARE } from './canary.ts';
import { DEFAULT_MAX_BODY_BYTES } from './api.ts';
import { errorMessage } from './errors.ts';
import { WeightsDir, weightsRoot } from './weights.ts';

/** `rules`, `policy`, or an OpenAI-compatible base URL (with --judge-model). */
function judgeConfig(flags: { judge?: string; judgeModel?: string; judgeApiKey?: string; backend: string; mode: string }): JudgeConfig {
  const judge = flags.judge ?? (flags.backend === 'embedded' || flags.mode === 'hints' ? 'rules' : 'policy');
  if (judge === 'policy' && flags.mode === 'hints') fail('hints mode has no policy to judge with: give --judge <url> --judge-model <name>, or no --judge (then only /clawrl hint feedback is learned)');
  if (judge === 'rules' || judge === 'policy') return { kind: judge };
  if (!/^https?:\/\//.test(judge)) fail(`--judge must be rules, policy or an http(s) URL, got ${JSON.stringify(judge)}`);
  if (!flags.judgeModel) fail('--judge <url> needs --judge-model');
  return { kind: 'endpoint', baseUrl: judge, model: flags.judgeModel, apiKey: flags.judgeApiKey ?? process.env.CLAWRL_JUDGE_API_KEY };
}

interface BackendFlags {
  backend: string;
  model?: string;
  gpus: number;
  python?: string;
  upstreamUrl?: string;
  upstreamModel?: string;
  upstreamApiKey?: string;
  upstreamAdapterRoot?: string;
  gradCkpt: string;
  decode: string;
  microBatchTokens?: number;
  seed: number;
  base: string;
}

async function createBackend(flags: BackendFlags, log: Logger): Promise<Backend> {
  const torch = async () => {
    const { TorchBackend } = await import('./backends/torch/index.ts');
    const workerArgs = ['--grad-ckpt', flags.gradCkpt, '--decode', flags.decode, ...(flags.microBatchTokens ? ['--micro-batch-tokens', String(flags.microBatchTokens)] : [])];
    return TorchBackend.create({ model: flags.model!, gpus: flags.gpus, python: flags.python, workerArgs, log });
  };
  if (flags.backend === 'torch') {
    if (!flags.model) fail('--backend torch needs --model (a local model directory, a Hugging Face id, or tiny-test)');
    return torch();
  }
  if (flags.backend === 'embedded') {
    const { EmbeddedBackend } = await import('./backends/embedded/index.ts');
    return EmbeddedBackend.create({ model: { seed: flags.seed }, base: flags.base });
  }
  if (flags.backend === 'upstream') {
    if (!flags.upstreamUrl) fail('--backend upstream needs --upstream-url (e.g. http://127.0.0.1:8000/v1)');
    const { UpstreamBackend } = await import('./backends/upstream.ts');
    const upstream = await UpstreamBackend.create({
      url: flags.upstreamUrl,
      model: flags.upstreamModel,
      apiKey: flags.upstreamApiKey ?? process.env.CLAWRL_UPSTREAM_API_KEY,
      adapterRoot: flags.upstreamAdapterRoot,
      log,
    });
    if (!flags.model) return upstream;
    // Serving at scale: the server serves and hot-loads each version, the torch worker trains.
    const { SplitBackend } = await import('./backends/split.ts');
    const training = await torch().catch(async (err: unknown) => {
      await upstream.close();
      throw err;
    });
    return SplitBackend.create(upstream, training, log).catch(async (err: unknown) => {
      await Promise.all([upstream.close(), training.close()]);
      throw err;
    });
  }
  fail(`unknown backend ${JSON.stringify(flags.backend)}; use embedded, torch or upstream`);
}

const program = new Command('clawrl-daemon')
  .description('clawrl training daemon: stores what an OpenClaw agent does, scores it, and trains its policy')
  .option('--data-dir <dir>', 'where the daemon keeps its data (env CLAWRL_DATA_DIR)', undefined)
  .showHelpAfterError();

program.hook('preAction', () => setDataDirFlag(program.opts<{ dataDir?: string }>().dataDir));

const integer = (min: number, max?: number) => numberArg({ integer: true, min, max });
const positive = numberArg({ min: 0, minExclusive: true });
const choice = (flags: string, description: string, values: readonly string[], fallback: string) => new Option(flags, description).choices(values).default(fallback);

program
  .command('start')
  .description('run the daemon in the foreground')
  .option('--host <host>', 'address to bind', DEFAULT_HOST)
  .option('--port <port>', 'port for /ws, /v1, /healthz (0: any free port)', integer(0, 65535), DEFAULT_PORT)
  .addOption(choice('--log-level <level>', 'how much to log', ['debug', 'info', 'warn', 'error', 'silent'], 'info'))
  .addOption(choice('--mode <mode>', 'train (serve, score, train; hint memory alongside) or hints (no policy: hint memory for the model the agent already uses)', ['train', 'hints'], 'train'))
  .option('--max-hints <n>', 'hints kept at most; the weakest are evicted beyond it', integer(1), 5000)
  .addOption(choice('--hint-scope <scope>', 'learned hints apply to every session of the agent (agent) or only to their own session (session)', ['agent', 'session'], 'agent'))
  .addOption(choice('--backend <name>', 'policy backend: embedded (CPU toy model), torch (a Hugging Face model on GPU) or upstream (an OpenAI-compatible server)', ['embedded', 'torch', 'upstream'], 'embedded'))
  .option('--model <model>', 'torch, or upstream to train: a local model directory, a Hugging Face id, or tiny-test')
  .option('--gpus <n>', 'torch: GPUs to train on (more than 1 runs torchrun with FSDP; rank 0 serves)', integer(1), 1)
  .option('--python <path>', 'torch: the Python that has torch (env CLAWRL_PYTHON; default python3)')
  .addOption(choice('--grad-ckpt <mode>', 'torch: recompute activations in the backward pass: auto (only once a step runs out of GPU memory; from the start with --gpus > 1), on or off', ['auto', 'on', 'off'], 'auto'))
  .addOption(choice('--decode <mode>', 'torch: KV cache of generation: static (with CUDA graphs on one GPU), growing, or auto (static on one GPU)', ['auto', 'static', 'growing'], 'auto'))
  .option('--micro-batch-tokens <n>', 'torch: padded tokens per forward/backward in a training step (default 4096)', integer(1))
  .option('--upstream-url <url>', "upstream server's OpenAI API base, e.g. http://127.0.0.1:8000/v1")
  .option('--upstream-model <name>', "model to ask upstream for (default: the first it lists)")
  .option('--upstream-api-key <key>', 'API key for upstream (env CLAWRL_UPSTREAM_API_KEY)')
  .option('--upstream-adapter-root <dir>', "the daemon's weights folder as the upstream server sees it (default: the same path)")
  .option('--seed <n>', 'seed of the embedded model', integer(0), 1)
  // The pretrained base answers in words and reads hints (OPD's teacher needs that); random bytes
  // from a random base make a poor first chat. `random` keeps the larger seeded base.
  .option('--base <name|file>', 'embedded base weights: hints (pretrained to read hints; default), random (from --seed), or a file made by scripts/pretrain-base.ts', 'hints')
  .addOption(choice('--recipe <name>', 'training recipe', Object.keys(recipes), 'binary-rl'))
  .option('--judge <judge>', 'rules (no model; default for embedded), policy (the served model; default otherwise), or an OpenAI-compatible base URL')
  .option('--judge-model <name>', 'model name at the --judge URL')
  .option('--judge-api-key <key>', 'API key for the --judge URL (env CLAWRL_JUDGE_API_KEY)')
  .option('--lr <rate>', "learning rate (default: the recipe's 1e-5; 1e-3 for the embedded toy model)", positive)
  .option('--batch-size <n>', 'scored turns per training step', integer(1), 16)
  .option('--tls-cert <file>', 'PEM certificate: serve https:// and wss:// (needed to bind a non-loopback address)')
  .option('--tls-key <file>', 'PEM private key for --tls-cert')
  .option('--insecure', 'allow plain HTTP on a non-loopback address (not recommended)')
  .option('--max-connections <n>', 'plugin WebSocket connections at once', integer(1), 64)
  .option('--max-store-mb <n>', 'refuse new events once the store holds this much (plugins keep spooling)', positive)
  .option('--max-request-mb <n>', 'largest /v1 request body; a larger one is refused with a 413 naming the limit (raise it for models that take images)', positive, DEFAULT_MAX_BODY_BYTES / 1024 / 1024)
  .option('--max-sessions <n>', 'sessions kept at most; opting in one more is refused', integer(1))
  .option('--retention-days <n>', 'delete events and turns older than this many days', positive)
  .option('--redact-pattern <regex>', 'also redact matches of this regular expression before storing (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
  .option('--max-wait <seconds>', 'train a partial batch once its oldest turn waited this long', numberArg({ min: 0 }), 600)
  .option('--metrics-public', 'serve GET /metrics without the token (for a Prometheus scraper on a trusted network)')
  .option('--no-guard', 'never roll back a version on its own (by default one significantly worse than its reference, or collapsing, is rolled back)')
  .option('--canary <share>', 'share of sessions a new version first serves, beside the current one, until the guard promotes or rolls it back (0: everyone at once; embedded and upstream backends)', numberArg({ min: 0, max: 1 }), DEFAULT_CANARY_SHARE)
  // Commander has checked every closed set (.choices) and number (numberArg): the types below hold.
  .action(async (opts: BackendFlags & { host: string; port: number; logLevel: Level | 'silent'; recipe: RecipeName; judge?: string; judgeModel?: string; judgeApiKey?: string; lr?: number; batchSize: number; maxWait: number; redactPattern: string[]; tlsCert?: string; tlsKey?: string; insecure?: boolean; maxConnections: number; maxStoreMb?: number; maxRequestMb: number; retentionDays?: number; maxSessions?: number } & { mode: DaemonMode; maxHints: number; hintScope: 'agent' | 'session' } & { metricsPublic?: boolean; guard: boolean; canary: number }) => {
    if (!opts.tlsCert !== !opts.tlsKey) fail('--tls-cert and --tls-key go together');
    const readPem = (file: string, what: string) => {
      try {
        return readFileSync(file);
      } catch (err) {
        fail(`cannot read the TLS ${what} ${file}: ${errorMessage(err)}`);
      }
    };
    const tls = opts.tlsCert && opts.tlsKey ? { cert: readPem(opts.tlsCert, 'certificate'), key: readPem(opts.tlsKey, 'key') } : undefined;
    try {
      setCustomPatterns(opts.redactPattern);
    } catch (err) {
      fail(errorMessage(err));
    }
    const judge = judgeConfig(opts);
    const dir = dataDir();
    const running = readRuntimeInfo(dir);
    if (running && running.pid !== process.pid && isProcessAlive(running.pid)) {
      fail(`a daemon (pid ${running.pid}) already uses ${dir}; stop it first`);
    }
    // The daemon outlives its output: a full disk or a closed pipe on stdout or stderr is counted, not fatal.
    guardOutput(process.stdout);
    guardOutput(process.stderr);
    const log = createLogger(opts.logLevel);
    // Everything the daemon and its workers create is private to this user (LMDB would make its
    // files 0644), and what an earlier run or a data dir made by hand left is made so too.
    process.umask(0o077);
    ensureDataDir(dir);
    for (const problem of secureDataDir(dir)) log.warn('could not make a file in the data dir private', { problem });
    const backend =
      opts.mode === 'hints' ? undefined : await createBackend(opts, log).catch((err: unknown) => fail(`could not start the ${opts.backend} backend: ${errorMessage(err)}`));
    const lr = opts.lr ?? (opts.backend === 'embedded' ? 1e-3 : undefined);
    const daemon = await startDaemon({
      dataDir: dir,
      host: opts.host,
      port: opts.port,
      log,
      backend,
      metricsPublic: opts.metricsPublic,
      guard: opts.guard,
      canary: opts.canary,
      mode: opts.mode,
      hints: { maxHints: opts.maxHints, scope: opts.hintScope },
      recipe: opts.recipe,
      judge,
      recipeOptions: { batchSize: opts.batchSize, ...(lr !== undefined && { lr }) },
      maxWaitMs: opts.maxWait * 1000,
      tls,
      insecure: opts.insecure,
      maxConnections: opts.maxConnections,
      maxStoreBytes: opts.maxStoreMb === undefined ? undefined : opts.maxStoreMb * 1024 * 1024,
      maxBodyBytes: Math.round(opts.maxRequestMb * 1024 * 1024),
      retentionDays: opts.retentionDays,
      maxSessions: opts.maxSessions,
    }).catch((err: unknown) => fail(errorMessage(err)));
    writeRuntimeInfo(dir, { pid: process.pid, host: daemon.host, port: daemon.port, startedAt: Date.now() });
    process.stdout.write(`clawrl daemon on ${daemon.url} (plugin: ${daemon.wsUrl}; data: ${dir})\n`);
    const shutdown = async () => {
      await daemon.close();
      rmSync(join(dir, 'daemon.json'), { force: true });
      process.exit(0);
    };
    process.once('SIGTERM', shutdown);
    process.once('SIGINT', shutdown);
  });

program
  .command('stop')
  .description('stop the daemon that runs on this data dir')
  .action(async () => {
    const info = readRuntimeInfo(dataDir());
    if (!info || !isProcessAlive(info.pid)) {
      process.stdout.write('clawrl daemon is not running\n');
      return;
    }
    process.kill(info.pid, 'SIGTERM');
    for (let i = 0; i < 100 && isProcessAlive(info.pid); i++) await new Promise((r) => setTimeout(r, 100));
    if (isProcessAlive(info.pid)) fail(`daemon (pid ${info.pid}) did not stop within 10 s`);
    process.stdout.write(`stopped clawrl daemon (pid ${info.pid})\n`);
  });

program
  .command('status')
  .description("show the running daemon's state")
  .option('--json', 'print JSON')
  .option('--watch', 'a live view, redrawn every second (queues, versions, reward trend, step progress)')
  .action(async (opts: { json?: boolean; watch?: boolean }) => {
    if (opts.watch) {
      const { watchStatus } = await import('./cli-watch.ts');
      await watchStatus(async () => {
        const reply = await callDaemon('GET', '/ui/api/overview');
        return reply?.status === 200 ? (reply.body as import('./dashboard.ts').Overview) : undefined;
      });
    }
    const reply = await callDaemon('GET', '/status');
    const status = reply?.status === 200 ? (reply.body as import('./types.ts').DaemonStatus) : undefined;
    if (opts.json) {
      process.stdout.write(JSON.stringify(status ? { running: true, ...status } : { running: false }) + '\n');
    } else if (!status) {
      process.stdout.write(`clawrl daemon is not running (data: ${dataDir()})\n`);
    } else {
      const s = status;
      const t = s.training;
      const step = t?.step ? `, step ${t.step.version} ${t.step.phase} (${t.step.turns} turns, ${Math.round((Date.now() - t.step.startedAt) / 1000)} s)` : '';
      process.stdout.write(
        [
          `clawrl daemon ${s.version}, pid ${s.pid}, up ${s.uptimeS} s`,
          `plugins connected: ${s.connections}`,
          `weights: serving ${s.weightVersion}${t?.pinned ? ' (pinned)' : ''}${t?.canary ? `; ${t.canary.version} on canary for ${Math.round(t.canary.share * 100)} % of sessions` : ''}${t?.swapError ? `; newest not serving: ${t.swapError}` : ''}`,
          `sessions: ${s.sessions.optedIn} opted in of ${s.sessions.total}`,
          `events: ${s.counters.eventsStored} stored, ${s.counters.duplicates} duplicates, ${s.counters.droppedNotOptedIn} dropped (not opted in)`,
          `scoring (${s.recipe}): ${s.scoring.queueDepth} waiting, ${s.scoring.scored} scored, ${s.scoring.trainable} trainable, ${s.scoring.judgeFailures} judge failures`,
          t ? `training: ${t.waiting}/${t.batchSize} turns waiting, ${t.steps} steps${step}` : 'training: off (backend serves only)',
          `health of ${s.weightVersion}: ${s.health ? describeHealth(s.health) : 'no turns served yet'}`,
          ...(s.guard?.lastRollback ? [`guard: rolled back ${s.guard.lastRollback.from} to ${s.guard.lastRollback.to} at ${new Date(s.guard.lastRollback.at).toISOString()}: ${s.guard.lastRollback.reason}`] : []),
        ].join('\n') + '\n',
      );
    }
    if (!status) process.exitCode = 1;
  });

const weights = program.command('weights').description('list, roll back or pin weight versions');

weights
  .command('list')
  .description('every version with its health on live traffic and, for one rolled back, why')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const live = (await callDaemon('GET', '/weights'))?.body as WeightsListing | undefined;
    // Without a running daemon, the store says the same.
    const listing: Omit<WeightsListing, 'serving' | 'pinned'> =
      live ??
      (await withStore((store) => {
        const health = new HealthReader(store);
        const measured = health.read();
        const versions = [...store.versions.getRange().map(({ value }) => ({ ...value, health: measured.get(value.version) ?? null, verdict: health.verdicts.get(value.version) ?? null }))];
        return { versions, base: measured.get('base') ?? null };
      }));
    const { versions } = listing;
    if (opts.json) {
      process.stdout.write(JSON.stringify({ serving: live?.serving ?? null, pinned: live?.pinned ?? null, ...listing }) + '\n');
      return;
    }
    if (listing.base) process.stdout.write(`  base\t${describeHealth(listing.base)}\n`);
    for (const v of versions) {
      const mark = v.version === live?.serving ? (live.pinned ? '* (pinned)' : '*') : ' ';
      const loss = typeof v.metrics.loss === 'number' ? v.metrics.loss.toFixed(4) : '-';
      process.stdout.write(`${mark} ${v.version}\tparent ${v.parent ?? 'base'}\t${v.recipe}\t${v.turnIds.length} turns\tloss ${loss}\t${new Date(v.createdAt).toISOString()}\n`);
      process.stdout.write(`    ${v.health ? describeHealth(v.health) : 'no turns served yet'}\n`);
      if (v.verdict) process.stdout.write(`    ${v.verdict.state} by ${v.verdict.by} at ${new Date(v.verdict.at).toISOString()}: ${v.verdict.reason}\n`);
    }
    if (versions.length === 0) process.stdout.write('no weight versions yet (serving base)\n');
  });

weights
  .command('rollback <version>')
  .description('serve an earlier version (or base) again, and train on from it')
  .action(async (version: string) => {
    await requireDaemon('POST', '/weights/rollback', { version });
    process.stdout.write(`serving ${version}\n`);
  });

weights
  .command('pin [version]')
  .description('keep serving one version while training goes on')
  .option('--unpin', 'serve the latest version again')
  .action(async (version: string | undefined, opts: { unpin?: boolean }) => {
    if (!version && !opts.unpin) fail('give a version to pin, or --unpin');
    const reply = (await requireDaemon('POST', '/weights/pin', { version: opts.unpin ? null : version })) as { serving: string };
    process.stdout.write(`serving ${reply.serving}${opts.unpin ? '' : ' (pinned)'}\n`);
  });

program
  .command('train')
  .description('run a training step')
  .option('--now', 'train now on whatever scored turns wait, without waiting for a full batch')
  .action(async (opts: { now?: boolean }) => {
    if (!opts.now) fail('training runs by itself when a batch is ready; use `train --now` to force a step');
    const reply = (await requireDaemon('POST', '/train')) as { version: WeightVersionRecord | null };
    process.stdout.write(reply.version ? `trained ${reply.version.version} on ${reply.version.turnIds.length} turns\n` : 'no scored turns are waiting\n');
  });

program
  .command('token')
  .description('print the access token (created on first use, file mode 0600)')
  .option('--rotate', 'replace the token (a running daemon switches at once and drops plugins on the old one)')
  .action(async (opts: { rotate?: boolean }) => {
    if (opts.rotate) {
      if (runningDaemonUrl()) await requireDaemon('POST', '/token/rotate');
      else {
        try {
          rotateToken(dataDir());
        } catch (err) {
          fail(errorMessage(err));
        }
      }
      process.stderr.write('rotated: give the new token to the plugin (plugins.entries.clawrl.config.token) and to /v1 clients\n');
    }
    process.stdout.write(loadOrCreateToken(dataDir()) + '\n');
  });

program
  .command('openclaw-config')
  .description("print the openclaw.json fragment that points OpenClaw at this daemon (token included), or merge it into a file")
  .option('--merge <file>', 'merge into this openclaw.json (keeps your other settings; written atomically)')
  .option('--model <id>', "model id to list (default: the running daemon's /v1/models)")
  .option('--url <url>', 'daemon URL as OpenClaw reaches it (default: the running daemon, else http://127.0.0.1:7077)')
  .option('--plugin-dir <dir>', 'also load the plugin from this checkout (plugins.load.paths)')
  .option('--primary', "make the daemon's model the agents' default model")
  .option('--hints-only', 'the plugin entry alone, no clawrl provider: for a daemon in --mode hints (the default when the running daemon is in that mode)')
  .action(async (opts: { merge?: string; model?: string; url?: string; pluginDir?: string; primary?: boolean; hintsOnly?: boolean }) => {
    const { openclawConfigFragment, mergeOpenclawConfig } = await import('./openclaw-config.ts');
    const url = opts.url ?? runningDaemonUrl() ?? `http://${DEFAULT_HOST}:${DEFAULT_PORT}`;
    const running = opts.model || opts.hintsOnly ? undefined : await callDaemon('GET', '/status');
    const hintsOnly = opts.hintsOnly || (running?.body as { mode?: string } | undefined)?.mode === 'hints';
    if (hintsOnly && (opts.primary || opts.model)) fail('in hints mode the daemon serves no model (the agent keeps its own): drop --primary and --model');
    const listed = opts.model || hintsOnly ? undefined : ((await callDaemon('GET', '/v1/models'))?.body as { data?: { id: string }[] } | undefined);
    const models = hintsOnly ? [] : opts.model ? [opts.model] : (listed?.data?.map((m) => m.id) ?? []);
    if (!hintsOnly && models.length === 0) fail('no running daemon to ask for its models; start it, or pass --model <id> (or --hints-only)');
    const fragment = openclawConfigFragment({
      daemonHttpUrl: url,
      token: loadOrCreateToken(dataDir()),
      models,
      pluginDir: opts.pluginDir,
      primaryModel: opts.primary ? models[0] : undefined,
    });
    if (!opts.merge) {
      process.stdout.write(JSON.stringify(fragment, null, 2) + '\n');
      return;
    }
    try {
      mergeOpenclawConfig(opts.merge, fragment);
    } catch (err) {
      fail(errorMessage(err));
    }
    process.stdout.write(`merged the ${hintsOnly ? '' : 'clawrl provider and '}plugin entry into ${opts.merge}\n`);
  });

const sessions = program.command('sessions').description('list, show, export or delete stored sessions');

sessions
  .command('list')
  .option('--json', 'print JSON lines')
  .action((opts: { json?: boolean }) =>
    withStore((store) => {
      for (const s of store.listSessions()) {
        const turns = [...store.turnsOf(s.sessionKey)].length;
        if (opts.json) process.stdout.write(JSON.stringify({ ...s, turns }) + '\n');
        else process.stdout.write(`${s.sessionKey}\t${s.optedIn ? 'opted in' : 'opted out'}\t${s.events} events\t${turns} turns\n`);
      }
    }),
  );

sessions
  .command('show <key>')
  .description("print a session's record and its stored events as JSON")
  .action((key: string) =>
    withStore((store) => {
      const record = store.sessions.get(key);
      if (!record) fail(`no session ${JSON.stringify(key)}`);
      process.stdout.write(JSON.stringify({ ...record, events: [...store.sessionEventsOf(key)] }, null, 2) + '\n');
    }),
  );

sessions
  .command('export')
  .description('print turns, one JSON object per line')
  .option('--json', 'JSON lines (the only format)')
  .option('--session <key>', 'only this session')
  .action((opts: { session?: string }) =>
    withStore((store) => {
      const shown = progress('exporting turns');
      const total = store.turns.getCount(opts.session === undefined ? {} : { start: [opts.session], end: [opts.session, Infinity] });
      let done = 0;
      for (const turn of store.turnsOf(opts.session)) {
        process.stdout.write(JSON.stringify(toExportedTurn(turn)) + '\n');
        shown.update(++done, total);
      }
      shown.finish();
    }),
  );

sessions
  .command('rm <key>')
  .description('delete everything stored about a session')
  .action((key: string) =>
    withStore(async (store) => {
      const shown = progress(`removing ${key}`);
      const removed = await store.removeSession(key, (done, total) => shown.update(done, total));
      shown.finish();
      if (!removed) fail(`no session ${JSON.stringify(key)}`);
      const versions = new WeightsDir(weightsRoot(dataDir())).forgetSession(key);
      process.stdout.write(`removed session ${key}${versions.length > 0 ? ` (and its turn ids from the clawrl.json of ${versions.length} weight version(s))` : ''}\n`);
    }),
  );

registerHintCommands(program);

await program.parseAsync(process.argv);
