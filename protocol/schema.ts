// A tiny schema language for the wire: messages.ts declares every frame and event once with it,
// and both the TypeScript types (`Infer`) and the validator (`check`) come from that one table.
// Each check names the field that is wrong, so a bad frame is refused with a useful message.

/** Longest id (session key, run id, call id, tool call id, client id, hint id), in UTF-8 bytes: ids become LMDB keys, whose limit is 1,978 bytes for a whole key. */
export const MAX_ID_BYTES = 512;
/** Deepest nesting of free-form values (tool params, metrics): deeper input is refused before it reaches recursive code. */
export const MAX_VALUE_DEPTH = 64;

export class ProtocolError extends Error {
  constructor(
    readonly code: 'bad_frame' | 'too_large',
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * 'string': any string; 'id': a string of at most MAX_ID_BYTES; 'key': a non-empty 'id';
 * 'number': finite; 'int': a non-negative safe integer; 'boolean'; 'any': any value nested at most
 * MAX_VALUE_DEPTH deep; 'strings' / 'ids': arrays of those; a tuple of literals: one of them; a
 * nested schema; `[schema]`: an array of it.
 */
export type FieldType =
  | 'string'
  | 'id'
  | 'key'
  | 'number'
  | 'int'
  | 'boolean'
  | 'any'
  | 'strings'
  | 'ids'
  | readonly [string, ...string[]]
  | Schema
  | readonly [Schema];
export interface FieldSpec {
  readonly type: FieldType;
  readonly optional?: boolean;
}
export type Schema = { readonly [field: string]: FieldSpec };

export const req = <const T extends FieldType>(type: T) => ({ type });
export const opt = <const T extends FieldType>(type: T) => ({ type, optional: true as const });
export const oneOf = <const T extends readonly [string, ...string[]]>(...values: T) => values;

type TypeOf<T> = T extends 'string' | 'id' | 'key'
  ? string
  : T extends 'number' | 'int'
    ? number
    : T extends 'boolean'
      ? boolean
      : T extends 'any'
        ? unknown
        : T extends 'strings' | 'ids'
          ? string[]
          : T extends readonly [infer S extends Schema]
            ? Infer<S>[]
            : T extends readonly (infer L extends string)[]
              ? L
              : T extends Schema
                ? Infer<T>
                : never;
type Flat<T> = { [K in keyof T]: T[K] };
type RequiredKeys<S extends Schema> = { [K in keyof S]: S[K] extends { optional: true } ? never : K }[keyof S];
type OptionalKeys<S extends Schema> = Exclude<keyof S, RequiredKeys<S>>;
/** The TypeScript type a schema describes. */
export type Infer<S extends Schema> = Flat<{ -readonly [K in RequiredKeys<S>]: TypeOf<S[K]['type']> } & { -readonly [K in OptionalKeys<S>]?: TypeOf<S[K]['type']> }>;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return 'binary';
  return typeof value;
}

const bad = (message: string) => new ProtocolError('bad_frame', message);

/** Whether a string fits the id bound (MAX_ID_BYTES of UTF-8). */
export function idFits(id: string): boolean {
  // Cheap bound first: a string of n UTF-16 units has at most 3n UTF-8 bytes.
  return id.length * 3 <= MAX_ID_BYTES || Buffer.byteLength(id) <= MAX_ID_BYTES;
}

// Paths name the field an error is about. They are built only when there is an error: a check
// runs on every field of every event, and each path is a string allocation.
/** `parent.field`, or `parent[i]` for an array item. */
const pathOf = (parent: string, field: string | number): string => (typeof field === 'number' ? `${parent}[${field}]` : `${parent}.${field}`);

function checkId(value: unknown, parent: string, field: string | number, nonEmpty: boolean): void {
  if (typeof value !== 'string') throw bad(`${pathOf(parent, field)} must be a string, got ${describe(value)}`);
  if (nonEmpty && value === '') throw bad(`${pathOf(parent, field)} must not be empty`);
  if (!idFits(value)) throw bad(`${pathOf(parent, field)} is ${Buffer.byteLength(value)} bytes long, over the limit of ${MAX_ID_BYTES} bytes`);
}

/** Depth of nested arrays and maps, iteratively (hostile input must not overflow the stack). */
function checkDepth(value: unknown, parent: string, field: string): void {
  if (typeof value !== 'object' || value === null) return;
  let level: unknown[] = [value];
  for (let depth = 0; level.length > 0; depth++) {
    if (depth > MAX_VALUE_DEPTH) throw bad(`${pathOf(parent, field)} nests deeper than ${MAX_VALUE_DEPTH} levels`);
    const next: unknown[] = [];
    for (const v of level) {
      // A loop, not push(...spread): a spread of 200,000 items overflows the stack.
      const children = Array.isArray(v) ? v : isPlainObject(v) ? Object.values(v) : [];
      for (const x of children) if (typeof x === 'object' && x !== null) next.push(x);
    }
    level = next;
  }
}

/** What `value` should have been, or undefined when it is of `type` (maps and arrays of maps are checked inside). */
function mismatch(value: unknown, type: FieldType, parent: string, field: string): string | undefined {
  if (type === 'any') checkDepth(value, parent, field);
  else if (type === 'string') {
    if (typeof value !== 'string') return 'a string';
  } else if (type === 'id' || type === 'key') checkId(value, parent, field, type === 'key');
  else if (type === 'number') {
    if (typeof value !== 'number' || !Number.isFinite(value)) return 'a finite number';
  } else if (type === 'int') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return 'a non-negative integer';
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') return 'a boolean';
  } else if (type === 'strings') {
    if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) return 'an array of strings';
  } else if (type === 'ids') {
    if (!Array.isArray(value)) return 'an array of strings';
    const at = pathOf(parent, field);
    for (let i = 0; i < value.length; i++) checkId(value[i], at, i, false);
  } else if (typeof type[0] === 'string') {
    const allowed = type as readonly string[];
    if (typeof value !== 'string' || !allowed.includes(value)) return `one of ${allowed.join(', ')}`;
  } else if (Array.isArray(type)) {
    if (!Array.isArray(value)) return 'an array';
    const at = pathOf(parent, field);
    for (let i = 0; i < value.length; i++) check(value[i], (type as readonly [Schema])[0], pathOf(at, i));
  } else {
    check(value, type as Schema, pathOf(parent, field));
  }
  return undefined;
}

/** Checks a map against a schema (extra fields are allowed: newer peers may add some). */
export function check(value: unknown, schema: Schema, path: string): asserts value is Record<string, unknown> {
  if (!isPlainObject(value)) throw bad(`${path} must be a map, got ${describe(value)}`);
  for (const field in schema) {
    const v = value[field];
    if (v === undefined || v === null) {
      if (!schema[field]!.optional) throw bad(`${path}.${field} is missing`);
      continue;
    }
    const expected = mismatch(v, schema[field]!.type, path, field);
    if (expected !== undefined) throw bad(`${path}.${field} must be ${expected}, got ${describe(v)}`);
  }
}
