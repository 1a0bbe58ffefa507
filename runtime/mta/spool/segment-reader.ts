import { open } from 'node:fs/promises';
import { HEADER_SIZE, MAGIC, checksumOk, parseHeader, type RecordType } from '../../shared/spool-record';

/**
 * One record as read: where it lies in the read buffer rather than copies or
 * views of it (a start-up scan reads millions; each view is an allocation).
 * Valid only until the next batch is asked for.
 */
export interface RawRecord {
  type: RecordType;
  /** File offset of the record. */
  offset: number;
  /** Header plus payload length. */
  length: number;
  buffer: Buffer;
  /** Index of the record's first byte in `buffer`. */
  start: number;
}

/** The record exactly as on disk (header and payload). */
export function recordBytes(r: RawRecord): Buffer {
  return r.buffer.subarray(r.start, r.start + r.length);
}

export function recordPayload(r: RawRecord): Buffer {
  return r.buffer.subarray(r.start + HEADER_SIZE, r.start + r.length);
}

export interface CorruptRange {
  offset: number;
  length: number;
}

export interface ReadOptions {
  from?: number;
  /** Stop at this offset (the committed end), so a reader never sees a half-written tail. */
  to?: number;
  chunkSize?: number;
  /** Told about every stretch of bytes that is not a valid record. */
  onCorrupt?: (range: CorruptRange) => void;
  /**
   * A sealed segment (not the one being appended to) was fsynced whole before
   * the next one began, so it cannot hold a torn write. Its records are taken
   * on their framing (magic, type, length and the next record's magic) without
   * the CRC pass over every body, which is most of a start-up scan; a record
   * whose framing does not line up is checked in full. Bodies are still
   * verified when they are read for delivery.
   */
  sealed?: boolean;
}

/**
 * Reads a segment's records in order with large sequential reads. A bad record
 * (wrong magic, bad length, CRC mismatch) is skipped by searching for the next
 * valid one, so one bad sector never hides the records after it. Returns the
 * offset after the last valid record: for the active segment that is where a
 * torn tail begins.
 */
export async function* readSegment(path: string, options: ReadOptions = {}): AsyncGenerator<RawRecord, number> {
  const batches = readSegmentBatches(path, options);
  try {
    for (;;) {
      const r = await batches.next();
      if (r.done) return r.value;
      yield* r.value;
    }
  } finally {
    // A reader that stops early must still close the file.
    await batches.return(0);
  }
}

/**
 * The same records, handed over a buffer-full at a time: the start-up scan
 * reads a million records, and one promise per buffer instead of per record
 * is a good part of its speed. A batch is valid until the next one is asked for.
 */
export async function* readSegmentBatches(path: string, options: ReadOptions = {}): AsyncGenerator<RawRecord[], number> {
  const fh = await open(path, 'r');
  try {
    const size = options.to ?? (await fh.stat()).size;
    let chunk = Buffer.allocUnsafe(options.chunkSize ?? 8 * 1024 * 1024);
    let bufStart = options.from ?? 0; // file offset of chunk[0]
    let bufLen = 0;
    let pos = 0; // index into chunk
    let validEnd = bufStart;
    let corruptFrom = -1;

    let batch: RawRecord[] = [];
    // Make chunk[pos .. pos+need) available; false at end of data. Moving bytes
    // invalidates the records handed out, so the batch goes first.
    const needsRead = (need: number): boolean => pos + need > bufLen && bufStart + pos + need <= size;
    const fill = async (need: number): Promise<boolean> => {
      if (pos + need <= bufLen) return true;
      if (bufStart + pos + need > size) return false;
      const keep = bufLen - pos;
      if (need > chunk.length) {
        const bigger = Buffer.allocUnsafe(need);
        chunk.copy(bigger, 0, pos, bufLen);
        chunk = bigger;
      } else {
        chunk.copy(chunk, 0, pos, bufLen);
      }
      bufStart += pos;
      pos = 0;
      bufLen = keep;
      while (bufLen < need) {
        const want = Math.min(chunk.length - bufLen, size - (bufStart + bufLen));
        const { bytesRead } = await fh.read(chunk, bufLen, want, bufStart + bufLen);
        if (bytesRead === 0) return false;
        bufLen += bytesRead;
      }
      return true;
    };
    const endCorrupt = (at: number): void => {
      if (corruptFrom >= 0) options.onCorrupt?.({ offset: corruptFrom, length: at - corruptFrom });
      corruptFrom = -1;
    };

    for (;;) {
      if (needsRead(HEADER_SIZE) && batch.length > 0) {
        yield batch;
        batch = [];
      }
      if (!(await fill(HEADER_SIZE))) break;
      const header = parseHeader(chunk, pos);
      if (header && needsRead(HEADER_SIZE + header.length) && batch.length > 0) {
        yield batch;
        batch = [];
      }
      const framed = (): boolean => {
        // The next record's magic (or the end of data) right where this one ends.
        const end = bufStart + pos + HEADER_SIZE + header!.length;
        if (end === size) return true;
        return pos + HEADER_SIZE + header!.length + 4 <= bufLen && chunk.readUInt32LE(pos + HEADER_SIZE + header!.length) === MAGIC;
      };
      if (header && options.sealed && bufStart + pos + HEADER_SIZE + header.length + 4 <= size && needsRead(HEADER_SIZE + header.length + 4) && batch.length > 0) {
        yield batch;
        batch = [];
      }
      if (header && options.sealed && bufStart + pos + HEADER_SIZE + header.length + 4 <= size) await fill(HEADER_SIZE + header.length + 4);
      if (header && (await fill(HEADER_SIZE + header.length)) && ((options.sealed && framed()) || checksumOk(chunk, pos, header))) {
        const offset = bufStart + pos;
        endCorrupt(offset);
        const total = HEADER_SIZE + header.length;
        batch.push({ type: header.type, offset, length: total, buffer: chunk, start: pos });
        pos += total;
        validEnd = bufStart + pos;
        continue;
      }
      // Not a valid record here: resynchronise on the next magic number.
      if (corruptFrom < 0) corruptFrom = bufStart + pos;
      pos += 1;
      for (;;) {
        if (needsRead(4) && batch.length > 0) {
          yield batch;
          batch = [];
        }
        if (!(await fill(4))) break;
        if (chunk.readUInt32LE(pos) === MAGIC) break;
        pos += 1;
      }
    }
    if (batch.length > 0) yield batch;
    endCorrupt(size);
    return validEnd;
  } finally {
    await fh.close();
  }
}
