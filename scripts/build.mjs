// The package's build (`npm run build`; `npm pack` and `npm publish` run it as `prepack`):
// TypeScript → dist/ (tsconfig.build.json rewrites the `.ts` import specifiers to `.js`), then
// the files the compiled code finds beside itself, at the same relative paths as in the source:
// the dashboard's ui/ and the torch worker's Python.
//
// `--clean` (postpack) removes dist/ again: OpenClaw loads a linked checkout's dist/plugin/index.js
// whenever it exists, so a dist/ left behind by `npm pack` would shadow later edits to plugin/.
import { execFileSync } from 'node:child_process';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const at = (path) => `${root}${path}`;

// Also before a build: a stale file (a module since removed from the source) must not ship.
rmSync(at('dist'), { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

try {
  execFileSync(process.execPath, [createRequire(import.meta.url).resolve('typescript/bin/tsc'), '-p', at('tsconfig.build.json')], { stdio: 'inherit' });
} catch {
  console.error('build: tsc -p tsconfig.build.json failed: its errors are above');
  process.exit(1);
}

cpSync(at('daemon/ui'), at('dist/daemon/ui'), { recursive: true });
// worker.py and what it imports; gpu_check.py is a developer's GPU check, run from a checkout.
const torch = 'daemon/backends/torch';
for (const file of readdirSync(at(torch))) {
  if (file.endsWith('.py') && file !== 'gpu_check.py') cpSync(at(`${torch}/${file}`), at(`dist/${torch}/${file}`));
}
