// Redaction speed on adversarial inputs of 1 MiB each: long runs of the characters the rules scan
// (base64, key characters, separators), near misses of every key format, and JSON with many keys,
// next to ordinary text. Every rule is linear, so each input should take milliseconds; a quadratic
// rule shows here as seconds. Prints a Markdown table (median of 5 runs per input).
// Run: node --import tsx bench/redact.ts
import { randomBytes } from 'node:crypto';
import { redactSecrets } from '../daemon/redact.ts';

const MB = 1024 * 1024;
/** `unit` repeated to 1 MiB. */
const fill = (unit: string) => unit.repeat(Math.ceil(MB / unit.length)).slice(0, MB);
const KEY_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-';

function jsonWithManyKeys(): string {
  const object: Record<string, string> = {};
  for (let i = 0, size = 0; size < MB; i++, size += 64) {
    object[`field${i}`] = `value-${i}`;
    object[`db_password_${i}`] = `hunter${i}x`;
    object[`note${i}`] = 'a:b=c';
  }
  return JSON.stringify(object);
}

const inputs: [string, string][] = [
  ['ordinary text (a shell session)', fill('$ ls -la /var/log\ntotal 42\n-rw-r--r-- 1 root root 1024 syslog\n$ grep -n "error" app.log | head\n')],
  ['base64 blob', randomBytes((MB * 3) / 4).toString('base64')],
  ['base64url blob', randomBytes((MB * 3) / 4).toString('base64url')],
  ['[A-Za-z0-9_.-] mixed', [...randomBytes(MB)].map((b) => KEY_CHARS[b % KEY_CHARS.length]).join('')],
  ['`a=` repeated', fill('a=')],
  ['`aaaa…=`', fill('a').slice(1) + '='],
  ['`aaaa…_password=hunter22`', fill('a').slice(0, MB - 18) + '_password=hunter22'],
  ['`----…`', fill('-')],
  ['`....…`', fill('.')],
  ['`a.a.…` (URL scheme near miss)', fill('a.')],
  ['`x://` repeated', fill('x://')],
  ['`http://u:pppp…` without `@`', fill(`http://u:${'p'.repeat(50)}`)],
  ['`sk-` + 19 characters, repeated', fill(`sk-${'a'.repeat(19)} `)],
  ['`sk-sk-sk-…` (one key)', fill('sk-')],
  ['`eyJ-` repeated (JWT near miss)', fill('eyJ-')],
  ['JWT without its third segment, repeated', fill(`eyJ${'a'.repeat(8)}.eyJ${'a'.repeat(8)}.x `)],
  ['`password=abc ` repeated', fill('password=abc ')],
  ['`Bearer abc ` repeated', fill('Bearer abc ')],
  ['`-----BEGIN A A A …`', `-----BEGIN ${fill('A ')}`],
  ['JSON, 3 keys per 64 bytes', jsonWithManyKeys()],
];

const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log('| input (1 MiB) | ms | MiB/s | redacted |');
console.log('|---|---:|---:|---:|');
for (const [name, text] of inputs) {
  const times: number[] = [];
  let found = 0;
  for (let run = 0; run < 5; run++) {
    const count = { found: 0 };
    const t0 = performance.now();
    redactSecrets(text, count);
    times.push(performance.now() - t0);
    found = count.found;
  }
  const ms = median(times);
  console.log(`| ${name} | ${ms.toFixed(1)} | ${(text.length / MB / (ms / 1000)).toFixed(0)} | ${found} |`);
}
