// A small structured logger: one JSON line per record on stderr, or a readable line on a TTY.
export type Level = 'debug' | 'info' | 'warn' | 'error';
const rank: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level | 'silent' = 'info', out: NodeJS.WritableStream = process.stderr): Logger {
  const pretty = (out as { isTTY?: boolean }).isTTY === true;
  const write = (lvl: Level) => (msg: string, fields: Record<string, unknown> = {}) => {
    if (level === 'silent' || rank[lvl] < rank[level]) return;
    const time = new Date().toISOString();
    if (pretty) {
      const extra = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
      out.write(`${time} ${lvl.toUpperCase().padEnd(5)} ${msg}${extra.length ? ' ' + extra.join(' ') : ''}\n`);
    } else {
      out.write(JSON.stringify({ time, level: lvl, msg, ...fields }) + '\n');
    }
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
