// `clawrl-daemon hints list|show|rm|export`: look at and prune hint memory. The commands open the
// store directly (LMDB shares it with a running daemon); a removal bumps the memory's revision, so
// plugins drop the hint at their next poll.
import type { Command } from 'commander';
import { fail, withStore } from './cli-common.ts';
import { FADED_BELOW, HintMemory, hintWeight, type HintRecord } from './hints.ts';
import { createLogger } from './log.ts';

const withHints = <T>(fn: (memory: HintMemory) => Promise<T> | T) => withStore((store) => fn(new HintMemory({ store, log: createLogger('silent') })));

function describeScope(h: HintRecord): string {
  return h.scope.sessionKey === undefined ? `agent ${h.scope.agent}` : `session ${h.scope.sessionKey}`;
}

export function registerHintCommands(program: Command): void {
  const hints = program.command('hints').description('list, show, export or delete what hint memory learned');

  hints
    .command('list')
    .option('--json', 'print JSON lines')
    .action((opts: { json?: boolean }) =>
      withHints((memory) => {
        const all = memory.list().sort((a, b) => hintWeight(b) - hintWeight(a));
        for (const h of all) {
          const weight = hintWeight(h);
          if (opts.json) process.stdout.write(JSON.stringify({ id: h.id, text: h.text, scope: h.scope, weight, faded: weight < FADED_BELOW }) + '\n');
          else process.stdout.write(`${h.id}\t${weight.toFixed(2)}${weight < FADED_BELOW ? ' (faded)' : ''}\t${describeScope(h)}\t${h.text}\n`);
        }
        if (all.length === 0 && !opts.json) process.stdout.write('no hints learned yet\n');
      }),
    );

  hints
    .command('show <id>')
    .description("print a hint's record (evidence, feedback, sources) as JSON")
    .action((id: string) =>
      withHints((memory) => {
        const hint = memory.hints.get(id);
        if (!hint) fail(`no hint ${JSON.stringify(id)}`);
        process.stdout.write(JSON.stringify({ ...hint, weight: hintWeight(hint) }, null, 2) + '\n');
      }),
    );

  hints
    .command('export')
    .description('print every hint record, one JSON object per line')
    .option('--json', 'JSON lines (the only format)')
    .action(() =>
      withHints((memory) => {
        for (const h of memory.list()) process.stdout.write(JSON.stringify({ ...h, weight: hintWeight(h) }) + '\n');
      }),
    );

  hints
    .command('rm <id>')
    .description('forget a hint')
    .action((id: string) =>
      withHints(async (memory) => {
        if (!(await memory.remove(id))) fail(`no hint ${JSON.stringify(id)}`);
        process.stdout.write(`removed hint ${id}\n`);
      }),
    );
}
