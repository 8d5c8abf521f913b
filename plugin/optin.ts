// Which sessions have opted in (or out) explicitly; the rest follow `optInByDefault`. Kept in a
// small JSON file in the plugin's state dir so `/clawrl on` survives a gateway restart.
import { mkdirSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export class OptIns {
  private readonly explicit = new Map<string, boolean>();
  private readonly file: string | undefined;
  private saving: Promise<void> = Promise.resolve();

  /** Without `stateDir` the choices live in memory only (tests, discovery loads). */
  constructor(
    /** The state of sessions that made no choice (`optInByDefault`); a config reload may change it. */
    public byDefault: boolean,
    stateDir?: string,
    private readonly onSaveError: (message: string) => void = () => {},
  ) {
    if (!stateDir) return;
    this.file = join(stateDir, 'optin.json');
    try {
      const saved = JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, unknown>;
      for (const [key, on] of Object.entries(saved)) if (typeof on === 'boolean') this.explicit.set(key, on);
    } catch {
      // No choices saved yet.
    }
  }

  isOptedIn(sessionKey: string | undefined): boolean {
    if (sessionKey === undefined) return this.byDefault;
    return this.explicit.get(sessionKey) ?? this.byDefault;
  }

  /** Records a choice; returns whether it changed the session's state. */
  set(sessionKey: string, on: boolean): boolean {
    const changed = this.isOptedIn(sessionKey) !== on;
    this.explicit.set(sessionKey, on);
    this.save();
    return changed;
  }

  /** Writes are chained so an older snapshot never lands after a newer one. */
  private save(): void {
    const file = this.file;
    if (!file) return;
    const snapshot = JSON.stringify(Object.fromEntries(this.explicit));
    this.saving = this.saving
      .then(async () => {
        mkdirSync(join(file, '..'), { recursive: true });
        await writeFile(`${file}.tmp`, snapshot);
        await rename(`${file}.tmp`, file);
      })
      .catch((err: unknown) => this.onSaveError(`clawrl: could not save opt-in choices: ${(err as Error).message}`));
  }

  /** Resolves once every choice made so far is on disk. */
  flushed(): Promise<void> {
    return this.saving;
  }
}
