const TERMINATOR = Buffer.from('\r\n.\r\n');

/**
 * Collects a DATA section: finds the terminating <CRLF>.<CRLF> (only that: a
 * bare-LF dot is not an end, which is what SMTP smuggling relies on), undoes
 * dot-stuffing, and stops storing past the size limit while still reading to
 * the end so the session stays in step.
 */
export class DataReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private tail: Buffer;
  oversize = false;

  constructor(private readonly maxSize: number) {
    // The DATA line's own CRLF counts as the start of the first line, so a
    // message consisting only of "." ends at once.
    this.tail = Buffer.from('\r\n');
  }

  /** Feeds bytes; returns the bytes after the terminator once the message is complete. */
  push(chunk: Buffer): Buffer | undefined {
    const joined = this.tail.length > 0 ? Buffer.concat([this.tail, chunk]) : chunk;
    const at = joined.indexOf(TERMINATOR);
    const offset = this.tail.length;
    if (at === -1) {
      this.store(chunk);
      this.tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 4)));
      return undefined;
    }
    // Body ends with the CRLF before the dot (part of the last line).
    const endInChunk = at + 2 - offset;
    if (endInChunk > 0) this.store(chunk.subarray(0, endInChunk));
    else if (endInChunk < 0) this.trim(-endInChunk);
    return chunk.subarray(at + TERMINATOR.length - offset);
  }

  /** The message with dot-stuffing undone. */
  message(): Buffer {
    const raw = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    return unstuff(raw);
  }

  private store(b: Buffer): void {
    if (this.oversize || b.length === 0) return;
    this.size += b.length;
    if (this.size > this.maxSize) {
      this.oversize = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(b);
  }

  /** The terminator began inside bytes already stored: drop them again. */
  private trim(n: number): void {
    while (n > 0 && this.chunks.length > 0) {
      const last = this.chunks[this.chunks.length - 1];
      const cut = Math.min(n, last.length);
      this.chunks[this.chunks.length - 1] = last.subarray(0, last.length - cut);
      this.size -= cut;
      n -= cut;
      if (this.chunks[this.chunks.length - 1].length === 0) this.chunks.pop();
    }
  }
}

function unstuff(raw: Buffer): Buffer {
  let start = raw[0] === 0x2e ? 1 : 0;
  let i = raw.indexOf('\r\n.', 0);
  if (start === 0 && i === -1) return raw;
  const parts: Buffer[] = [];
  while (i !== -1) {
    parts.push(raw.subarray(start, i + 2));
    start = i + 3; // skip the stuffed dot
    i = raw.indexOf('\r\n.', start);
  }
  parts.push(raw.subarray(start));
  return Buffer.concat(parts);
}
