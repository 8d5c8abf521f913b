// msgpack framing with validation. Every decoded frame is checked field by field against the
// schema below, so a bad frame is refused with a message naming what was wrong instead of
// reaching the store.
import { Packr } from 'msgpackr';
import { DEFAULT_MAX_FRAME_BYTES, type Message } from './messages.ts';

export class ProtocolError extends Error {
  constructor(
    readonly code: 'bad_frame' | 'too_large',
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

// Plain maps out (no records extension) so any msgpack implementation can speak to us.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encode(message: Message): Buffer {
  return packr.pack(message);
}

export function decode(frame: Uint8Array, maxBytes = DEFAULT_MAX_FRAME_BYTES): Message {
  if (frame.byteLength > maxBytes) {
    throw new ProtocolError('too_large', `frame of ${frame.byteLength} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (err) {
    throw new ProtocolError('bad_frame', `frame is not valid msgpack: ${(err as Error).message}`);
  }
  return validateMessage(value);
}

// A field type: 'string', 'number' (finite), 'int' (non-negative safe integer), 'boolean',
// 'any', a list of allowed string literals, or a nested schema / array-of-schema.
type FieldType = 'string' | 'number' | 'int' | 'boolean' | 'any' | 'strings' | readonly string[] | Schema | [Schema];
type Schema = { readonly [field: string]: { type: FieldType; optional?: boolean } };

const req = (type: FieldType) => ({ type });
const opt = (type: FieldType) => ({ type, optional: true });

const toolCall: Schema = { id: req('string'), name: req('string'), arguments: req('string') };
const eventBase: Schema = {
  seq: req('int'),
  at: req('number'),
  sessionKey: req('string'),
  sessionId: opt('string'),
  runId: opt('string'),
};

const eventSchemas: Record<string, Schema> = {
  'session.optin': {},
  'session.optout': {},
  'model.call': {
    callId: req('string'),
    turnId: opt('string'),
    provider: req('string'),
    model: req('string'),
    trigger: opt('string'),
    side: req('boolean'),
  },
  'model.output': {
    assistantTexts: req('strings'),
    toolCalls: req([toolCall]),
    usage: opt({ input: opt('number'), output: opt('number'), total: opt('number') }),
  },
  'tool.result': {
    toolCallId: req('string'),
    toolName: req('string'),
    params: opt('any'),
    output: req('string'),
    isError: req('boolean'),
    exitCode: opt('number'),
    timedOut: opt('boolean'),
    durationMs: opt('number'),
    image: opt({ count: req('int'), mimeTypes: req('strings'), bytes: req('int') }),
  },
  'user.message': { content: req('string') },
  'run.end': { success: req('boolean'), error: opt('string'), durationMs: opt('number') },
  'session.end': { reason: opt('string') },
  feedback: { rating: opt(['good', 'bad']), hint: opt('string') },
  'hints.injected': { hintIds: req('strings') },
};

const messageSchemas: Record<string, Schema> = {
  hello: { protocol: req('int'), clientId: req('string'), clientVersion: req('string') },
  events: {}, // events are checked one by one below, to name the bad one
  welcome: { protocol: req('int'), serverVersion: req('string'), ackedSeq: req('int'), weightVersion: req('string') },
  ack: { seq: req('int') },
  'weights.updated': { version: req('string'), recipe: req('string'), metrics: req('any'), reason: opt(['trained', 'rollback', 'pin', 'unpin', 'adopted']) },
  error: { code: req('string'), message: req('string') },
};

/** Largest batch of events in one frame; bigger batches must be split by the sender. */
export const MAX_EVENTS_PER_FRAME = 10_000;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return 'binary';
  return typeof value;
}

function checkField(value: unknown, type: FieldType, path: string): void {
  const fail = (expected: string) => {
    throw new ProtocolError('bad_frame', `${path} must be ${expected}, got ${describe(value)}`);
  };
  if (type === 'any') return;
  if (type === 'string') {
    if (typeof value !== 'string') fail('a string');
  } else if (type === 'number') {
    if (typeof value !== 'number' || !Number.isFinite(value)) fail('a finite number');
  } else if (type === 'int') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail('a non-negative integer');
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') fail('a boolean');
  } else if (type === 'strings') {
    if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) fail('an array of strings');
  } else if (Array.isArray(type) && typeof type[0] === 'string') {
    const allowed = type as unknown as readonly string[];
    if (typeof value !== 'string' || !allowed.includes(value)) fail(`one of ${allowed.join(', ')}`);
  } else if (Array.isArray(type)) {
    if (!Array.isArray(value)) fail('an array');
    (value as unknown[]).forEach((item, i) => checkObject(item, (type as [Schema])[0], `${path}[${i}]`));
  } else {
    checkObject(value, type as Schema, path);
  }
}

function checkObject(value: unknown, schema: Schema, path: string): asserts value is Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new ProtocolError('bad_frame', `${path} must be a map, got ${describe(value)}`);
  }
  for (const [field, spec] of Object.entries(schema)) {
    const v = value[field];
    if (v === undefined || v === null) {
      if (!spec.optional) throw new ProtocolError('bad_frame', `${path}.${field} is missing`);
      continue;
    }
    checkField(v, spec.type, `${path}.${field}`);
  }
}

function validateEvent(value: unknown, path: string): void {
  checkObject(value, eventBase, path);
  const kind = value.kind;
  if (typeof kind !== 'string' || !Object.hasOwn(eventSchemas, kind)) {
    throw new ProtocolError('bad_frame', `${path}.kind is unknown: ${JSON.stringify(String(kind)).slice(0, 80)}`);
  }
  checkObject(value, eventSchemas[kind]!, `${path}(${kind})`);
}

export function validateMessage(value: unknown): Message {
  checkObject(value, {}, 'frame');
  const type = value.type;
  if (typeof type !== 'string' || !Object.hasOwn(messageSchemas, type)) {
    throw new ProtocolError('bad_frame', `frame.type is unknown: ${JSON.stringify(String(type)).slice(0, 80)}`);
  }
  checkObject(value, messageSchemas[type]!, type);
  if (type === 'events') {
    const events = value.events;
    if (!Array.isArray(events)) throw new ProtocolError('bad_frame', `events.events must be an array, got ${describe(events)}`);
    if (events.length > MAX_EVENTS_PER_FRAME) {
      throw new ProtocolError('bad_frame', `events.events has ${events.length} events, more than ${MAX_EVENTS_PER_FRAME}`);
    }
    events.forEach((event, i) => validateEvent(event, `events[${i}]`));
  }
  return value as unknown as Message;
}
