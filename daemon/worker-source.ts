// The source of an eval worker that loads one of the daemon's modules. In the built package the
// module is JavaScript. In a source checkout it is TypeScript, and on Node 20 a worker inherits
// neither the parent's loader hooks nor a `--import tsx` in execArgv, so the worker registers tsx
// first. Both are resolved from here, so the current directory does not matter.

export function workerSource(moduleUrl: string): string {
  const load = `import(${JSON.stringify(moduleUrl)})`;
  if (!moduleUrl.endsWith('.ts')) return load;
  return `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return ${load}; })`;
}
