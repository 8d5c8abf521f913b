#!/usr/bin/env node
// `npm test`: the whole suite as two streams at once, each one test file at a time. The real-OpenClaw
// files (each mostly one OpenClaw process busy on one core) run in one stream, everything else in
// the other, so on two cores the suite takes about as long as the longer stream. Two OpenClaw files
// at once would compete for the same cores and time out; that is why it is not plain
// `--test-concurrency=2`. Extra arguments pick test files (e.g. `npm test -- test/turns.test.ts`).
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const picked = process.argv.slice(2);
const files = picked.length > 0 ? picked : readdirSync(join(root, 'test')).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join('test', f));
const isHost = (file) => /(^|\/)openclaw-[^/]*\.test\.ts$/.test(file);
const streams = [
  { name: 'openclaw', files: files.filter(isHost) },
  { name: 'rest', files: files.filter((f) => !isHost(f)) },
].filter((s) => s.files.length > 0);

// Each failed test's TAP block (from `not ok` to the end of its YAML diagnostics), repeated after
// both streams end, so a CI log that keeps only its tail still names what failed and why.
const failures = [];

/** Collects the TAP blocks of failed tests from one stream's stdout lines. */
function failureCollector(name) {
  let block = null;
  return (line) => {
    if (block === null && /^\s*not ok \d+/.test(line)) block = [line];
    else if (block !== null) {
      block.push(line);
      if (/^\s*\.\.\.$/.test(line)) {
        failures.push(block.map((l) => `[${name}] ${l}`).join('\n'));
        block = null;
      }
    }
  };
}

/** Runs one stream; its output lines are prefixed with its name. Resolves with its exit code. */
function runStream({ name, files: its }) {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...its], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const collect = failureCollector(name);
  for (const [from, to] of [[child.stdout, process.stdout], [child.stderr, process.stderr]]) {
    const isStdout = from === child.stdout;
    let rest = '';
    from.setEncoding('utf8');
    from.on('data', (chunk) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop();
      for (const line of lines) {
        to.write(`[${name}] ${line}\n`);
        if (isStdout) collect(line);
      }
    });
    from.on('end', () => rest && to.write(`[${name}] ${rest}\n`));
  }
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      console.log(`== ${name}: ${its.length} files, ${code === 0 ? 'passed' : `FAILED (${signal ?? `exit ${code}`})`} in ${Math.round((Date.now() - started) / 1000)} s`);
      resolve(code ?? 1);
    });
  });
}

const codes = await Promise.all(streams.map(runStream));
if (failures.length > 0) console.log(`== ${failures.length} failed:\n${failures.join('\n')}`);
process.exitCode = codes.some((c) => c !== 0) ? 1 : 0;
