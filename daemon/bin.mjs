#!/usr/bin/env node
// `clawrl-daemon`. A source checkout runs the TypeScript beside this file through tsx, so
// development needs no build step and never runs stale output; the package ships no TypeScript
// and runs the CLI compiled into dist/ (scripts/build.mjs).
import { existsSync } from 'node:fs';

const source = new URL('./cli.ts', import.meta.url);
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(source.href);
} else {
  await import('../dist/daemon/cli.js');
}
