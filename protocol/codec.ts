// msgpack framing with validation: every decoded frame is checked against the tables of
// messages.ts, so a bad frame is refused with a message naming what was wrong instead of
// reaching the store.
import { Packr } from 'msgpackr';
import { DEFAULT_MAX_FRAME_BYTES, validateMessage, type Message } from './messages.ts';
import { ProtocolError } from './schema.ts';

// Plain maps out (no records extension) so any msgpack implementation can speak to us.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

export function encode(message: Message): Buffer {
  return packr.pack(message);
}

/**
 * Decodes and validates a frame. With `events: 'seq'` an events frame's events are checked only
 * for their seq (the receiver checks each with `partitionEvents` and refuses just the bad ones).
 */
export function decode(frame: Uint8Array, maxBytes = DEFAULT_MAX_FRAME_BYTES, opts?: { events: 'each' | 'seq' }): Message {
  if (frame.byteLength > maxBytes) {
    throw new ProtocolError('too_large', `frame of ${frame.byteLength} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (err) {
    throw new ProtocolError('bad_frame', `frame is not valid msgpack: ${(err as Error).message}`);
  }
  return validateMessage(value, opts);
}
