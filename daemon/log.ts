// Structured logs through pino: one JSON line per record on stderr, or pino-pretty's readable
// lines on a TTY. Callers keep the small (msg, fields) interface below, so no module depends on
// pino's argument order.
import { pino } from 'pino';
import pretty from 'pino-pretty';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function createLogger(level: Level | 'silent' = 'info', out: NodeJS.WritableStream = process.stderr): Logger {
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  // Synchronous, so the last lines before process.exit() are not lost.
  const destination = tty ? pretty({ destination: out, sync: true, translateTime: 'SYS:standard' }) : out;
  const logger = pino(
    {
      level,
      // No pid/hostname on every line; ISO times and level names ("info", not 30) keep the lines readable by grep and jq.
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  const at = (lvl: Level) => (msg: string, fields: Record<string, unknown> = {}) => logger[lvl](fields, msg);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
