// This checkout packs as two packages.
//
// The daemon (`npm pack`: this package.json, clawrl-daemon). prepack runs this script: TypeScript
// → dist/ (tsconfig.build.json rewrites the `.ts` import specifiers to `.js`), then the files the
// compiled code finds beside itself, at the same relative paths as in the source: the dashboard's
// ui/ and the torch worker's Python.
//
// The OpenClaw plugin (`--plugin [dir]`, `npm run pack:plugin`: a package named after the plugin's
// id, clawrl, packed into dir, default the current one; `--plugin-dir dir` writes the same package
// unpacked into dir, which the OpenClaw tests install). Its entry is bundled into one file with
// what it imports (ws, msgpackr, minisearch), so the package declares no dependencies: OpenClaw
// copies and scans every declared dependency of a plugin each time it loads it, and the daemon's
// (lmdb, pino, ...) made each load take seconds (bench/plugin-load.sh).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (path) => join(root, path);
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

function fail(message) {
  console.error(`build: ${message}`);
  process.exit(1);
}

function buildDaemon() {
  try {
    execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', at('tsconfig.build.json')], { stdio: 'inherit' });
  } catch {
    fail('tsc -p tsconfig.build.json failed: its errors are above');
  }
  cpSync(at('daemon/ui'), at('dist/daemon/ui'), { recursive: true });
  // worker.py and what it imports; gpu_check.py is a developer's GPU check, run from a checkout.
  const torch = 'daemon/backends/torch';
  for (const file of readdirSync(at(torch))) {
    if (file.endsWith('.py') && file !== 'gpu_check.py') cpSync(at(`${torch}/${file}`), at(`dist/${torch}/${file}`));
  }
}

/** Writes the plugin package, unpacked, into dir (which must exist). */
async function writePlugin(dir) {
  const { build } = await import('esbuild');
  const pkg = readJson(at('package.json'));
  const manifest = readJson(at('openclaw.plugin.json'));
  const { extensions, ...openclaw } = pkg.openclaw;
  try {
    await build({
      entryPoints: extensions.map((entry) => at(entry)),
      outbase: root,
      outdir: dir,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node22',
      // Optional native helpers of ws and msgpackr, which run without them as when they are not installed.
      external: ['bufferutil', 'utf-8-validate', 'msgpackr-extract'],
      // ws is CommonJS: its require() of Node's own modules needs a real require in an ES module.
      banner: { js: "import { createRequire as clawrlCreateRequire } from 'node:module';\nconst require = clawrlCreateRequire(import.meta.url);" },
      logLevel: 'warning',
    });
  } catch {
    fail('esbuild could not bundle the plugin: its errors are above');
  }
  const plugin = {
    name: manifest.id,
    version: pkg.version,
    description: manifest.description,
    type: 'module',
    license: pkg.license,
    openclaw: { extensions: extensions.map((entry) => entry.replace(/\.ts$/, '.js')), ...openclaw },
  };
  writeFileSync(join(dir, 'package.json'), JSON.stringify(plugin, null, 2) + '\n');
  for (const file of ['openclaw.plugin.json', 'README.md']) cpSync(at(file), join(dir, file));
}

async function packPlugin(destination) {
  const dir = mkdtempSync(join(tmpdir(), 'clawrl-plugin-package-'));
  try {
    await writePlugin(dir);
    execFileSync('npm', ['pack', dir, '--pack-destination', destination], { stdio: 'inherit' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const pluginFlag = process.argv.indexOf('--plugin');
const pluginDirFlag = process.argv.indexOf('--plugin-dir');
if (pluginFlag >= 0) {
  await packPlugin(resolve(process.argv[pluginFlag + 1] ?? '.'));
} else if (pluginDirFlag >= 0) {
  const dir = process.argv[pluginDirFlag + 1] ?? fail('--plugin-dir needs a folder');
  mkdirSync(dir, { recursive: true });
  await writePlugin(resolve(dir));
} else {
  // A stale file (a module since removed from the source) must not ship.
  rmSync(at('dist'), { recursive: true, force: true });
  buildDaemon();
}
