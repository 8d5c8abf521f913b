// The long soak: many links, many SIGKILLs of the daemon, random link drops.
// Usage: node --import tsx bench/soak.ts [--links 8] [--events 20000] [--kills 20] [--drops 40]
import { parseArgs } from 'node:util';
import { runSoak } from '../test/soak-run.ts';

const { values } = parseArgs({ options: { links: { type: 'string', default: '8' }, events: { type: 'string', default: '20000' }, kills: { type: 'string', default: '20' }, drops: { type: 'string', default: '40' } } });
const r = await runSoak({ links: Number(values.links), eventsPerLink: Number(values.events), kills: Number(values.kills), drops: Number(values.drops) });
console.log('| links | events sent | kills survived | link drops | stored | lost | duplicates | out of order | left in spools | seconds |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
console.log(`| ${values.links} | ${r.sent.toLocaleString('en')} | ${r.kills} | ${r.drops} | ${r.stored.toLocaleString('en')} | ${r.lost} | ${r.duplicates} | ${r.outOfOrder} | ${r.spooledAtEnd} | ${r.seconds.toFixed(1)} |`);
if (r.lost || r.duplicates || r.outOfOrder || r.spooledAtEnd) process.exitCode = 1;
