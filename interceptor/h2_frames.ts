/**
 * HTTP/2 framing (RFC 9113 4, 6): frame types, flags, error codes and
 * settings identifiers, and the encoders for every frame we send. Parsing
 * is in h2_conn.ts, which alone decides what a received frame means.
 */

export const PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** The preface's first line: enough to tell an HTTP/2 attempt from HTTP/1.1. */
export const PREFACE_LINE_LENGTH = 16;

export const enum FrameType {
  Data = 0,
  Headers = 1,
  Priority = 2,
  RstStream = 3,
  Settings = 4,
  PushPromise = 5,
  Ping = 6,
  Goaway = 7,
  WindowUpdate = 8,
  Continuation = 9,
}

export const enum Flag {
  EndStream = 0x1,
  Ack = 0x1,
  EndHeaders = 0x4,
  Padded = 0x8,
  Priority = 0x20,
}

/** RFC 9113 7. */
export const enum ErrorCode {
  NoError = 0x0,
  Protocol = 0x1,
  Internal = 0x2,
  FlowControl = 0x3,
  SettingsTimeout = 0x4,
  StreamClosed = 0x5,
  FrameSize = 0x6,
  RefusedStream = 0x7,
  Cancel = 0x8,
  Compression = 0x9,
  Connect = 0xa,
  EnhanceYourCalm = 0xb,
  InadequateSecurity = 0xc,
  Http11Required = 0xd,
}

export const ERROR_NAMES: Record<number, string> = {
  0: "NO_ERROR",
  1: "PROTOCOL_ERROR",
  2: "INTERNAL_ERROR",
  3: "FLOW_CONTROL_ERROR",
  4: "SETTINGS_TIMEOUT",
  5: "STREAM_CLOSED",
  6: "FRAME_SIZE_ERROR",
  7: "REFUSED_STREAM",
  8: "CANCEL",
  9: "COMPRESSION_ERROR",
  10: "CONNECT_ERROR",
  11: "ENHANCE_YOUR_CALM",
  12: "INADEQUATE_SECURITY",
  13: "HTTP_1_1_REQUIRED",
};

export const enum Setting {
  HeaderTableSize = 0x1,
  EnablePush = 0x2,
  MaxConcurrentStreams = 0x3,
  InitialWindowSize = 0x4,
  MaxFrameSize = 0x5,
  MaxHeaderListSize = 0x6,
}

export const FRAME_HEADER = 9;
export const DEFAULT_WINDOW = 65_535;
export const DEFAULT_MAX_FRAME = 16_384;
export const MAX_WINDOW = 2 ** 31 - 1;

function header(out: Uint8Array, len: number, type: number, flags: number, sid: number): void {
  out[0] = (len >>> 16) & 0xff;
  out[1] = (len >>> 8) & 0xff;
  out[2] = len & 0xff;
  out[3] = type;
  out[4] = flags;
  out[5] = (sid >>> 24) & 0x7f;
  out[6] = (sid >>> 16) & 0xff;
  out[7] = (sid >>> 8) & 0xff;
  out[8] = sid & 0xff;
}

function put32(out: Uint8Array, at: number, v: number): void {
  out[at] = (v >>> 24) & 0xff;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/** A frame with `payload` copied after its header. */
export function frame(
  type: number,
  flags: number,
  sid: number,
  payload: Uint8Array = EMPTY,
): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + payload.length);
  header(out, payload.length, type, flags, sid);
  out.set(payload, FRAME_HEADER);
  return out;
}

const EMPTY = new Uint8Array(0);

export function settingsFrame(entries: Array<[number, number]>): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + entries.length * 6);
  header(out, entries.length * 6, FrameType.Settings, 0, 0);
  let at = FRAME_HEADER;
  for (const [id, v] of entries) {
    out[at] = (id >>> 8) & 0xff;
    out[at + 1] = id & 0xff;
    put32(out, at + 2, v);
    at += 6;
  }
  return out;
}

export const SETTINGS_ACK: Uint8Array = frame(FrameType.Settings, Flag.Ack, 0);

export function pingFrame(data: Uint8Array, ack: boolean): Uint8Array {
  return frame(FrameType.Ping, ack ? Flag.Ack : 0, 0, data);
}

export function goawayFrame(lastStream: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug.slice(0, 200));
  const out = new Uint8Array(FRAME_HEADER + 8 + text.length);
  header(out, 8 + text.length, FrameType.Goaway, 0, 0);
  put32(out, FRAME_HEADER, lastStream & 0x7fffffff);
  put32(out, FRAME_HEADER + 4, code);
  out.set(text, FRAME_HEADER + 8);
  return out;
}

export function rstFrame(sid: number, code: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + 4);
  header(out, 4, FrameType.RstStream, 0, sid);
  put32(out, FRAME_HEADER, code);
  return out;
}

export function windowUpdateFrame(sid: number, increment: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER + 4);
  header(out, 4, FrameType.WindowUpdate, 0, sid);
  put32(out, FRAME_HEADER, increment & 0x7fffffff);
  return out;
}

/** A DATA frame; the payload is copied, so the caller may reuse its buffer. */
export function dataFrame(sid: number, payload: Uint8Array, endStream: boolean): Uint8Array {
  return frame(FrameType.Data, endStream ? Flag.EndStream : 0, sid, payload);
}

/** A header block as HEADERS and as many CONTINUATION frames as `maxFrame` needs, in one buffer. */
export function headersFrames(
  sid: number,
  block: Uint8Array,
  endStream: boolean,
  maxFrame: number,
): Uint8Array {
  const n = Math.max(1, Math.ceil(block.length / maxFrame));
  const out = new Uint8Array(block.length + n * FRAME_HEADER);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const part = block.subarray(i * maxFrame, Math.min(block.length, (i + 1) * maxFrame));
    const last = i === n - 1;
    const type = i === 0 ? FrameType.Headers : FrameType.Continuation;
    const flags = (last ? Flag.EndHeaders : 0) | (i === 0 && endStream ? Flag.EndStream : 0);
    header(out.subarray(at), part.length, type, flags, sid);
    out.set(part, at + FRAME_HEADER);
    at += FRAME_HEADER + part.length;
  }
  return out;
}

/** The 31-bit value at `at` (the reserved bit dropped). */
export function read31(b: Uint8Array, at: number): number {
  return ((b[at]! & 0x7f) << 24 | b[at + 1]! << 16 | b[at + 2]! << 8 | b[at + 3]!) >>> 0;
}

export function read32(b: Uint8Array, at: number): number {
  return (b[at]! << 24 | b[at + 1]! << 16 | b[at + 2]! << 8 | b[at + 3]!) >>> 0;
}
