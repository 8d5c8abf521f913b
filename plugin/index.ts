// The OpenClaw plugin entry (`openclaw.extensions` in package.json). It has the shape
// `definePluginEntry` returns; the helper is not imported because `openclaw` is not a dependency.
//
// OpenClaw calls `register` several times per process, in different modes, and the registry that
// ends up live is not necessarily the 'full' one: in openclaw@2026.9.6 an `agent --local` run
// fires the hooks and provider of a 'discovery' registration. So every registration registers
// everything, and all of them share one runtime per state dir (one link, one spool, one set of
// opt-ins), created without side effects: files and sockets open only when the link service
// starts or the first event is captured. A one-shot `agent --local` run starts no plugin
// services, so there the first event starts the link; what the process leaves unsent stays in
// the spool for the next start.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { WeightsUpdatedMessage } from '../protocol/index.ts';
import { Capture } from './capture.ts';
import { clawrlCommand } from './commands.ts';
import { PLUGIN_VERSION, hintsUrlOf, parseConfig, screenshotCopy, type PluginConfig } from './config.ts';
import { HintCache, hintsHook } from './hints.ts';
import type { PluginApi, PluginEntry } from './host-types.ts';
import { Link, installIdOf } from './link.ts';
import { WeightNotices } from './notices.ts';
import { OptIns } from './optin.ts';
import { PROVIDER_ID, clawrlProvider, rerouteWhenDaemonDown } from './provider.ts';

class Runtime {
  readonly optIns: OptIns;
  readonly capture: Capture;
  /** The daemon's hints, kept in sync for before_prompt_build; it opens no socket before first use. */
  readonly hints: HintCache;
  readonly notices = new WeightNotices(PROVIDER_ID);
  private link: Link | undefined;
  private serviceStopped = false;

  constructor(
    private api: PluginApi,
    private config: PluginConfig,
    private readonly stateDir: string,
  ) {
    this.optIns = new OptIns(config.optInByDefault, stateDir, (message) => this.api.logger.warn(message));
    this.capture = new Capture(
      {
        enqueue: (event) => {
          const link = this.getLink();
          link.enqueue(event);
          if (!this.serviceStopped) link.start();
        },
      },
      this.optIns,
      { warn: (message) => this.api.logger.warn(message) },
      screenshotCopy(config),
    );
    this.hints = new HintCache({ url: hintsUrlOf(config.daemonUrl), token: config.token, logger: { warn: (message) => this.api.logger.warn(message) }, installId: this.installId });
  }

  /** This install's id: read (or made) at first use, not at registration, which must not touch files. */
  readonly installId = () => installIdOf(this.stateDir);

  /** The settings in force (a config reload replaces them). */
  get settings(): PluginConfig {
    return this.config;
  }

  /** OpenClaw's own config in force (the live one where the host offers it). */
  openclawConfig(): unknown {
    return this.api.runtime?.config?.current?.() ?? this.api.config;
  }

  /** A later registration (config reload) brings new settings and a new api object. */
  reconfigure(api: PluginApi, config: PluginConfig): void {
    this.api = api;
    this.config = config;
    this.optIns.byDefault = config.optInByDefault;
    this.capture.screens.setCopy(screenshotCopy(config));
    this.link?.reconfigure(this.linkSettings());
    this.hints.reconfigure(hintsUrlOf(config.daemonUrl), config.token);
  }

  linkStatus() {
    return this.link?.status();
  }

  startService(): void {
    this.serviceStopped = false;
    this.getLink().start();
    this.hints.start();
  }

  async stopService(): Promise<void> {
    this.serviceStopped = true;
    this.hints.stop();
    await Promise.all([this.link?.stop(), this.optIns.flushed(), this.capture.screens.close()]);
  }

  /** The CA file's PEM, read when the link is configured; a missing file is logged, not thrown. */
  private caPem(): string | undefined {
    if (!this.config.caFile) return undefined;
    try {
      return readFileSync(this.config.caFile, 'utf8');
    } catch (err) {
      this.api.logger.warn(`clawrl: cannot read caFile ${this.config.caFile}: ${(err as Error).message}; using the system's CAs`);
      return undefined;
    }
  }

  private linkSettings() {
    return {
      url: this.config.daemonUrl,
      token: this.config.token,
      ca: this.caPem(),
      spoolMaxEvents: this.config.spoolMaxEvents,
      spoolMaxBytes: this.config.spoolMaxBytes,
      onWeights: (msg: WeightsUpdatedMessage) => {
        if (this.config.notifyOnWeights) this.notices.weightsChanged(msg, this.capture.activeSessionKeys());
      },
    };
  }

  private getLink(): Link {
    this.link ??= new Link({ ...this.linkSettings(), stateDir: this.stateDir, logger: this.api.logger, clientVersion: PLUGIN_VERSION });
    return this.link;
  }
}

/** `<OpenClaw state dir>/clawrl`: client id, spool, opt-in choices. */
function pluginStateDir(api: PluginApi): string {
  const root = api.runtime?.state?.resolveStateDir?.(process.env) ?? process.env.OPENCLAW_STATE_DIR ?? join(homedir(), '.openclaw');
  return join(root, 'clawrl');
}

/** Process-wide, so that copies of this module loaded by different registrations share it too. */
const runtimes: Map<string, Runtime> = ((globalThis as Record<symbol, unknown>)[Symbol.for('clawrl.runtimes')] ??= new Map()) as Map<
  string,
  Runtime
>;

function runtimeFor(api: PluginApi, config: PluginConfig): Runtime {
  const stateDir = pluginStateDir(api);
  let runtime = runtimes.get(stateDir);
  if (runtime) runtime.reconfigure(api, config);
  else runtimes.set(stateDir, (runtime = new Runtime(api, config, stateDir)));
  return runtime;
}

const entry: PluginEntry = {
  id: 'clawrl',
  name: 'clawrl',
  description: 'Lets the agent learn from its own live work: captures (action, next state) pairs for the clawrl daemon and serves its model.',
  register(api) {
    const config = parseConfig(api.pluginConfig);
    const runtime = runtimeFor(api, config);
    api.registerProvider(clawrlProvider(config, runtime.capture, api.logger, runtime.installId));
    runtime.capture.registerHooks(api.on.bind(api));
    api.on('before_prompt_build', hintsHook(runtime.hints, runtime.capture, () => runtime.settings, api.logger));
    api.on(
      'before_model_resolve',
      rerouteWhenDaemonDown({ config: () => runtime.settings, openclawConfig: () => runtime.openclawConfig(), linkStatus: () => runtime.linkStatus(), logger: api.logger }),
    );
    api.on('reply_payload_sending', (event) => runtime.notices.onReply(event));
    api.registerCommand(clawrlCommand(runtime.capture, () => runtime.linkStatus(), runtime.hints));
    api.registerService({ id: 'clawrl-link', start: () => runtime.startService(), stop: () => runtime.stopService() });
  },
};

export default entry;
