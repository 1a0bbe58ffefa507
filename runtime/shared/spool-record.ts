// The spool's record framing, shared by the MTA (which writes and scans its
// segments) and the HA mirror (which reads the records of bytes it must set
// aside): the two daemons share code only through runtime/shared.
import { crc32 } from 'node:zlib';

// On-disk record framing of the spool log (little-endian):
//   0  u32  magic 'VLY1'
//   4  u8   type
//   5  u8   flags (0)
//   6  u16  reserved (0)
//   8  u32  payload length
//  12  u32  CRC-32 of bytes 4..12 and the payload
//  16  payload
// The magic lets a scan resynchronise after a corrupt record; the CRC covers
// the length so a torn header cannot send the scan past the real data.
export const MAGIC = 0x31594c56;
export const HEADER_SIZE = 16;
export const MAX_PAYLOAD = 1024 * 1024 * 1024;

export enum RecordType {
  /** A message: u32 envelope length, envelope JSON, then the raw RFC 5322 body. */
  Message = 1,
  /** A change to a queued message's delivery state (JSON). */
  State = 2,
  /** A message left the queue (delivered, failed, expired, purged or drained) (JSON). */
  Done = 3,
}

export function frame(type: RecordType, payload: Buffer[]): Buffer[] {
  let length = 0;
  for (const p of payload) length += p.length;
  const header = Buffer.allocUnsafe(HEADER_SIZE);
  header.writeUInt32LE(MAGIC, 0);
  header.writeUInt8(type, 4);
  header.writeUInt8(0, 5);
  header.writeUInt16LE(0, 6);
  header.writeUInt32LE(length, 8);
  let crc = crc32(header.subarray(4, 12));
  for (const p of payload) crc = crc32(p, crc);
  header.writeUInt32LE(crc, 12);
  return [header, ...payload];
}

export interface ParsedHeader {
  type: RecordType;
  length: number;
  crc: number;
}

/** Reads a header at `offset`; undefined when the bytes cannot be a header. */
export function parseHeader(buf: Buffer, offset: number): ParsedHeader | undefined {
  if (buf.readUInt32LE(offset) !== MAGIC) return undefined;
  const type = buf.readUInt8(offset + 4);
  const length = buf.readUInt32LE(offset + 8);
  if (type < RecordType.Message || type > RecordType.Done || length > MAX_PAYLOAD) return undefined;
  return { type, length, crc: buf.readUInt32LE(offset + 12) };
}

export function checksumOk(buf: Buffer, offset: number, header: ParsedHeader): boolean {
  let crc = crc32(buf.subarray(offset + 4, offset + 12));
  crc = crc32(buf.subarray(offset + HEADER_SIZE, offset + HEADER_SIZE + header.length), crc);
  return crc === header.crc;
}

export function messagePayload(envelopeJson: string, body: Buffer): Buffer[] {
  const env = Buffer.from(envelopeJson, 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(env.length, 0);
  return [len, env, body];
}

/** Splits a Message payload into its envelope JSON text and body. */
export function splitMessagePayload(payload: Buffer): { envelope: string; body: Buffer } {
  const envLen = payload.readUInt32LE(0);
  return { envelope: payload.toString('utf8', 4, 4 + envLen), body: payload.subarray(4 + envLen) };
}

/** The magic as it lies on disk, to search for. */
const MAGIC_BYTES = (() => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(MAGIC, 0);
  return b;
})();

/** One record found in a buffer by `decodeRecords`. */
export interface DecodedRecord {
  type: RecordType;
  /** Offset of the record's header in the buffer. */
  offset: number;
  payload: Buffer;
}

/**
 * Every valid record in `buf` (a segment or a piece of one that starts on a
 * record), in order. Bytes that are not a valid record are skipped to the
 * next magic that starts one, so one bad stretch hides nothing after it; they
 * and a torn last record are counted in `skipped`.
 */
export function decodeRecords(buf: Buffer): { records: DecodedRecord[]; skipped: number } {
  const records: DecodedRecord[] = [];
  let skipped = 0;
  let at = 0;
  while (at + HEADER_SIZE <= buf.length) {
    const h = parseHeader(buf, at);
    if (h && at + HEADER_SIZE + h.length <= buf.length && checksumOk(buf, at, h)) {
      records.push({ type: h.type, offset: at, payload: buf.subarray(at + HEADER_SIZE, at + HEADER_SIZE + h.length) });
      at += HEADER_SIZE + h.length;
      continue;
    }
    const next = buf.indexOf(MAGIC_BYTES, at + 1);
    const to = next < 0 ? buf.length : next;
    skipped += to - at;
    at = to;
  }
  skipped += buf.length - at;
  return { records, skipped };
}
