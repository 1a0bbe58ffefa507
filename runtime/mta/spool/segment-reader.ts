import { open } from 'node:fs/promises';
import { HEADER_SIZE, MAGIC, checksumOk, parseHeader, type RecordType } from './record';

export interface RawRecord {
  type: RecordType;
  offset: number;
  /** Header plus payload, exactly as on disk. Valid only until the next iteration. */
  bytes: Buffer;
  payload: Buffer;
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
      if (header && (await fill(HEADER_SIZE + header.length)) && checksumOk(chunk, pos, header)) {
        const offset = bufStart + pos;
        endCorrupt(offset);
        const total = HEADER_SIZE + header.length;
        batch.push({ type: header.type, offset, bytes: chunk.subarray(pos, pos + total), payload: chunk.subarray(pos + HEADER_SIZE, pos + total) });
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
