// The versions folder: <data-dir>/weights/vNNNNNN/ holds a LoRA adapter in PEFT layout
// (adapter_config.json + adapter_model.safetensors) and clawrl.json (parent, recipe, batch turn
// ids, metrics). A version appears by an atomic rename of a fully written, fsynced folder, so a
// reader never sees half of one; chokidar watches the folder so a version dropped in by an
// external trainer is picked up the same way.
//
// Versions are private like the rest of the data dir: folders 0700, files 0600 (whoever wrote
// them: the torch worker writes its adapter files itself). A temporary folder left by a daemon
// killed mid-write is removed when the next one starts.
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { isTurnOfSession, type WeightVersionRecord } from './store.ts';
import type { Logger } from './log.ts';
import { isProcessAlive } from './config.ts';
import { errorMessage } from './errors.ts';

export const VERSION_PATTERN = /^v\d{6}$/;
export const METADATA_FILE = 'clawrl.json';
const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];

/** Where a daemon keeps its versions: `<data-dir>/weights`. */
export const weightsRoot = (dataDir: string) => join(dataDir, 'weights');

export const versionName = (n: number) => `v${String(n).padStart(6, '0')}`;
export const versionNumber = (version: string) => (VERSION_PATTERN.test(version) ? Number(version.slice(1)) : 0);

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const metadataJson = (record: WeightVersionRecord) => JSON.stringify(record, null, 2) + '\n';

/** `.tmp-<version>-<pid>`: where publish() writes a version before renaming it into place. */
const TEMP_PATTERN = /^\.tmp-.*-(\d+)$/;

export class WeightsDir {
  constructor(
    readonly root: string,
    log?: Logger,
  ) {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    chmodSync(root, 0o700);
    for (const name of readdirSync(root)) {
      const pid = TEMP_PATTERN.exec(name)?.[1];
      // Another daemon still writing it (not this process: it has written nothing yet) keeps it.
      if (pid === undefined || (Number(pid) !== process.pid && isProcessAlive(Number(pid)))) continue;
      rmSync(join(root, name), { recursive: true, force: true });
      log?.warn('removed a weight version left half-written by a daemon that stopped mid-write', { folder: join(root, name) });
    }
  }

  pathOf(version: string): string {
    return join(this.root, version);
  }

  /** Versions present on disk, oldest first. */
  list(): string[] {
    return readdirSync(this.root)
      .filter((name) => VERSION_PATTERN.test(name))
      .sort();
  }

  /**
   * Writes a version atomically: `write` fills a temporary folder, then every file and the
   * folder are fsynced and the folder is renamed into place.
   */
  async publish(record: WeightVersionRecord, write: (dir: string) => Promise<void>): Promise<string> {
    const final = this.pathOf(record.version);
    const tmp = join(this.root, `.tmp-${record.version}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { mode: 0o700 });
    await write(tmp);
    writeFileSync(join(tmp, METADATA_FILE), metadataJson(record), { mode: 0o600 });
    for (const name of readdirSync(tmp)) {
      const path = join(tmp, name);
      chmodSync(path, statSync(path).isDirectory() ? 0o700 : 0o600);
      fsyncPath(path);
    }
    chmodSync(tmp, 0o700);
    fsyncPath(tmp);
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    fsyncPath(this.root);
    return final;
  }

  /** Reads and checks a version's metadata and files; throws an Error naming what is wrong. */
  validate(version: string): WeightVersionRecord {
    const dir = this.pathOf(version);
    for (const name of [...ADAPTER_FILES, METADATA_FILE]) {
      const path = join(dir, name);
      if (!existsSync(path)) throw new Error(`${version}: ${name} is missing`);
      if (statSync(path).size === 0) throw new Error(`${version}: ${name} is empty`);
    }
    let record: WeightVersionRecord;
    try {
      record = JSON.parse(readFileSync(join(dir, METADATA_FILE), 'utf8')) as WeightVersionRecord;
    } catch (err) {
      throw new Error(`${version}: ${METADATA_FILE} is not valid JSON: ${errorMessage(err)}`, { cause: err });
    }
    if (record.version !== version) throw new Error(`${version}: ${METADATA_FILE} names version ${JSON.stringify(record.version)}`);
    return record;
  }

  /**
   * Takes a session's turns out of every version's clawrl.json (`sessions rm`: the batch's turn
   * ids name sessions by key), replacing each file that names it atomically. Returns the versions
   * changed. A clawrl.json that is not JSON is left as it is: no version is read from it either.
   */
  forgetSession(sessionKey: string): string[] {
    const changed: string[] = [];
    for (const version of this.list()) {
      const file = join(this.pathOf(version), METADATA_FILE);
      let record: WeightVersionRecord;
      try {
        record = JSON.parse(readFileSync(file, 'utf8')) as WeightVersionRecord;
      } catch {
        continue;
      }
      if (!Array.isArray(record.turnIds) || !record.turnIds.some((id) => isTurnOfSession(id, sessionKey))) continue;
      writeFileSync(`${file}.tmp`, metadataJson({ ...record, turnIds: record.turnIds.filter((id) => !isTurnOfSession(id, sessionKey)) }), { mode: 0o600 });
      fsyncPath(`${file}.tmp`);
      renameSync(`${file}.tmp`, file);
      fsyncPath(this.pathOf(version));
      changed.push(version);
    }
    return changed;
  }

  /**
   * Calls `onVersion` when a version's clawrl.json appears: after an atomic rename, or once an
   * external trainer has finished writing it (it must write clawrl.json last).
   */
  watch(onVersion: (version: string) => void): FSWatcher {
    const watcher = chokidar.watch(this.root, { depth: 1, ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 } });
    const seen = (path: string) => {
      const [name, file] = path.slice(this.root.length + 1).split('/');
      if (file === METADATA_FILE && VERSION_PATTERN.test(name!)) onVersion(name!);
    };
    watcher.on('add', seen).on('change', seen);
    return watcher;
  }
}
