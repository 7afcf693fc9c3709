/**
 * The relay's two frame types (docs/protocol.md §9), carried in ordinary
 * snakeMQ packets next to Messaging's frames and only between peers that
 * sent EXTENSIONS (snakemq-ts peers: they ignore frame types they do not
 * know). RELAY carries one packet of a relayed stream; RELAY_CONTROL the
 * hello, route queries and replies, closes and flow-control credit.
 * @module
 */
import { Buffer } from 'node:buffer';
import { isValidIdent, MAX_IDENT_BYTES } from '../messaging/frames.js';

/** `[24][hops u8][src len u8][src][dst len u8][dst]` then a run of one or more inner packets, each `[u32 length][payload]`. */
export const FRAME_RELAY = 24;
/** `[25][kind u8][...]`, see {@link Control}. */
export const FRAME_RELAY_CONTROL = 25;
/** Kinds of RELAY_CONTROL frames. */
export const Control = {
  /** `[flags u8]`: bit 0, "I forward for you". */
  HELLO: 1,
  /** `[query id 8][hops u8][target len u8][target]`: who can reach target? */
  QUERY: 2,
  /** `[query id 8][distance u8][target len u8][target]`: I reach target in `distance` hops. */
  REPLY: 3,
  /** `[reason u8][src len u8][src][dst len u8][dst]`: the stream between src and dst is closed. */
  CLOSE: 4,
  /** `[bytes u32][src len u8][src][dst len u8][dst]`: `bytes` of src→dst went on past the next hop. */
  CREDIT: 5,
} as const;
/** Why a relayed stream was closed (CLOSE's reason byte). */
export const CloseReason = { CLOSED: 1, UNREACHABLE: 2, REFUSED: 3, OVERFLOW: 4, HOP_LIMIT: 5 } as const;
/** One of {@link CloseReason}'s values. */
export type CloseReason = (typeof CloseReason)[keyof typeof CloseReason];
/** The longest head a RELAY frame can have: type, hops, two identities with their lengths, and one inner packet's length. */
export const MAX_RELAY_HEAD = 1 + 1 + 1 + MAX_IDENT_BYTES + 1 + MAX_IDENT_BYTES + 4;
/** HELLO flag: the sender forwards for the receiver. */
export const HELLO_FORWARDS = 1;

/** A RELAY frame's head as read from a packet. */
export interface RelayHead {
  hops: number;
  src: string;
  dst: string;
  /** Where the run of inner packets starts (at the first one's 4-byte length). */
  at: number;
}

/** The head of a RELAY frame for src→dst (the caller appends the inner packets). */
export function encodeRelayHead(hops: number, src: string, dst: string): Buffer {
  const s = Buffer.from(src, 'utf8');
  const d = Buffer.from(dst, 'utf8');
  const head = Buffer.allocUnsafe(4 + s.length + d.length);
  head[0] = FRAME_RELAY;
  head[1] = hops;
  head[2] = s.length;
  s.copy(head, 3);
  head[3 + s.length] = d.length;
  d.copy(head, 4 + s.length);
  return head;
}

/**
 * Reads a RELAY frame's head at `buf[start, end)`; null when it is malformed
 * (bad lengths, a bad identity, no inner packet, a first inner packet longer
 * than the rest). The inner packets after the first are checked by whoever
 * reads them (the destination); a relay passes them on as they are.
 */
export function decodeRelayHead(buf: Buffer, start: number, end: number): RelayHead | null {
  if (end - start < 1 + 1 + 1 + 1 + 1 + 1 + 4) return null;
  const hops = buf[start + 1]!;
  const sl = buf[start + 2]!;
  const dAt = start + 3 + sl;
  if (dAt + 1 > end) return null;
  const dl = buf[dAt]!;
  const at = dAt + 1 + dl;
  if (sl === 0 || dl === 0 || at + 4 > end) return null;
  if (buf.readUInt32BE(at) > end - at - 4) return null;
  const src = buf.toString('utf8', start + 3, dAt);
  const dst = buf.toString('utf8', dAt + 1, at);
  if (!isValidIdent(src) || !isValidIdent(dst)) return null;
  return { hops, src, dst, at };
}

/** HELLO. */
export function encodeHello(flags: number): Buffer {
  return Buffer.from([FRAME_RELAY_CONTROL, Control.HELLO, flags]);
}

/** QUERY or REPLY (same layout: id, a count, the target). */
export function encodeQuery(kind: typeof Control.QUERY | typeof Control.REPLY, id: Buffer, count: number, target: string): Buffer {
  const t = Buffer.from(target, 'utf8');
  const out = Buffer.allocUnsafe(2 + 8 + 1 + 1 + t.length);
  out[0] = FRAME_RELAY_CONTROL;
  out[1] = kind;
  id.copy(out, 2, 0, 8);
  out[10] = count;
  out[11] = t.length;
  t.copy(out, 12);
  return out;
}

/** CLOSE or CREDIT for the pair src→dst, with `value` (a reason byte, or bytes as u32). */
export function encodePairControl(kind: typeof Control.CLOSE | typeof Control.CREDIT, value: number, src: string, dst: string): Buffer {
  const s = Buffer.from(src, 'utf8');
  const d = Buffer.from(dst, 'utf8');
  const v = kind === Control.CREDIT ? 4 : 1;
  const out = Buffer.allocUnsafe(2 + v + 2 + s.length + d.length);
  out[0] = FRAME_RELAY_CONTROL;
  out[1] = kind;
  if (v === 4) out.writeUInt32BE(value >>> 0, 2);
  else out[2] = value;
  let at = 2 + v;
  out[at++] = s.length;
  s.copy(out, at);
  at += s.length;
  out[at++] = d.length;
  d.copy(out, at);
  return out;
}

/** A decoded RELAY_CONTROL frame. */
export type ControlFrame =
  | { kind: typeof Control.HELLO; flags: number }
  | { kind: typeof Control.QUERY | typeof Control.REPLY; id: Buffer; count: number; target: string }
  | { kind: typeof Control.CLOSE | typeof Control.CREDIT; value: number; src: string; dst: string };

/** Reads a RELAY_CONTROL frame at `buf[start, end)`; null when it is malformed or of an unknown kind. */
export function decodeControl(buf: Buffer, start: number, end: number): ControlFrame | null {
  if (end - start < 3) return null;
  const kind = buf[start + 1]!;
  switch (kind) {
    case Control.HELLO:
      return end - start === 3 ? { kind, flags: buf[start + 2]! } : null;
    case Control.QUERY:
    case Control.REPLY: {
      if (end - start < 13) return null;
      const tl = buf[start + 11]!;
      if (tl === 0 || start + 12 + tl !== end) return null;
      const target = buf.toString('utf8', start + 12, end);
      if (!isValidIdent(target)) return null;
      return { kind, id: Buffer.from(buf.subarray(start + 2, start + 10)), count: buf[start + 10]!, target };
    }
    case Control.CLOSE:
    case Control.CREDIT: {
      const v = kind === Control.CREDIT ? 4 : 1;
      let at = start + 2 + v;
      if (at + 1 > end) return null;
      const value = v === 4 ? buf.readUInt32BE(start + 2) : buf[start + 2]!;
      const sl = buf[at++]!;
      if (sl === 0 || at + sl + 1 > end) return null;
      const src = buf.toString('utf8', at, at + sl);
      at += sl;
      const dl = buf[at++]!;
      if (dl === 0 || at + dl !== end) return null;
      const dst = buf.toString('utf8', at, end);
      if (!isValidIdent(src) || !isValidIdent(dst)) return null;
      return { kind, value, src, dst };
    }
    default:
      return null;
  }
}
