// A short soak in the default suite: kill -9 of the daemon mid-stream, link drops, nothing lost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runSoak } from './soak-run.ts';

test('SIGKILLs of the daemon and dropped links lose nothing and store nothing twice', { timeout: 180_000 }, async () => {
  const report = await runSoak({ links: 3, eventsPerLink: 1500, kills: 3, drops: 4, seed: 7 });
  assert.equal(report.kills, 3);
  assert.ok(report.drops >= 1);
  assert.deepEqual(
    { lost: report.lost, duplicates: report.duplicates, outOfOrder: report.outOfOrder, spooledAtEnd: report.spooledAtEnd, stored: report.stored },
    { lost: 0, duplicates: 0, outOfOrder: 0, spooledAtEnd: 0, stored: report.sent },
  );
});
