// A returning primary's unreplicated tail, set aside instead of overwritten.
// A node that was primary (or on whose path an MTA ran while it was a
// secondary) may hold spool records and log lines the new primary never
// received. Its catch-up would truncate, rewrite or delete them; instead,
// while such a node is marked, the first destructive operation a batch makes
// on an append file (spool segment, event or attempt log), and the deletion
// of any other file, first moves the file's original aside
// (`mirror/quarantine/pending/stash/<path>`, fsynced).
// When the primary says the node is caught up, each original is compared
// with what the primary sent: the bytes past their common prefix (from the
// record or line that starts it) or a whole file the primary does not have
// go to `mirror/quarantine/<epoch>-<timestamp>/<path>` with a
// `quarantine.json` naming the message ids in those spool records. The MTA
// never reads that folder: nothing there is delivered unless an operator
// puts it back, and nothing is dropped without a report.
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from '../shared/log';
import { VolleyError } from '../shared/errors';
import { HEADER_SIZE, RecordType, decodeRecords, splitMessagePayload } from '../shared/spool-record';
import type { BatchOp } from './apply';
import { absolute, classify } from './files';
import { fsyncDir, mirrorDir } from './state';

export function quarantineDir(root: string): string {
  return join(mirrorDir(root), 'quarantine');
}

function pendingDir(root: string): string {
  return join(quarantineDir(root), 'pending');
}

function markerPath(root: string): string {
  return join(pendingDir(root), 'marker.json');
}

function stashDir(root: string): string {
  return join(pendingDir(root), 'stash');
}

/** Why this node may hold what its primary never sent, and the epoch it held it under. */
export interface QuarantineMarker {
  epoch: number;
  since: string;
  why: string;
}

/** One file's set-aside bytes in a report. */
export interface QuarantinedFile {
  path: string;
  /** Offset in the node's original file where the set-aside bytes began (0 for a whole file). */
  from: number;
  bytes: number;
  /** The primary has no such file: all of it was this node's alone. */
  whole_file: boolean;
  /** Ids of messages whose Message record (the mail itself) is in these bytes: accepted here, never received by the primary. */
  messages: string[];
  /** Ids named only by State or Done records here (delivery progress this node made that the primary does not know). */
  updated: string[];
  /** Bytes that are not whole valid records (a torn last write). */
  unparsed_bytes: number;
}

export interface QuarantineReport {
  /** The epoch this node held the bytes under (it was primary of it, or secondary of it with an MTA running). */
  epoch: number;
  /** The epoch of the primary it caught up with. */
  primary_epoch: number;
  created: string;
  why: string;
  dir: string;
  files: QuarantinedFile[];
  messages: string[];
  updated: string[];
}

export function readMarker(root: string): QuarantineMarker | undefined {
  let text: string;
  try {
    text = readFileSync(markerPath(root), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new VolleyError('EQUARANTINE', `cannot read ${markerPath(root)}: ${(err as Error).message}`);
  }
  try {
    const m = JSON.parse(text) as QuarantineMarker;
    return { epoch: Number(m.epoch) || 0, since: String(m.since), why: String(m.why) };
  } catch {
    // A torn marker still says "this node may hold mail of its own": keep quarantining.
    return { epoch: 0, since: new Date(0).toISOString(), why: 'unreadable marker' };
  }
}

/**
 * Marks this node as one whose next catch-up must set aside what it alone
 * holds. Durable before it returns (written before the role changes, so a
 * crash in between leaves a marked primary, never an unmarked secondary).
 * An existing marker is kept: the oldest reason is the one that matters.
 */
export function markForQuarantine(root: string, epoch: number, why: string, now: number): void {
  if (readMarker(root)) return;
  const dir = pendingDir(root);
  mkdirSync(dir, { recursive: true });
  const file = markerPath(root);
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, `${JSON.stringify({ epoch, since: new Date(now).toISOString(), why })}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  for (const d of dirsUpTo(dir, mirrorDir(root))) fsyncDir(d);
}

/**
 * The guard for a catch-up starting now, or undefined for a node that holds
 * only what a primary sent it. An MTA's lock left on a secondary's path (an
 * MTA ran here and was killed) marks the node first: that MTA may have
 * accepted mail.
 */
export function guardCatchUp(root: string, epoch: number, staleLockPid: number | undefined, logger: Logger, now: number): QuarantineGuard | undefined {
  if (staleLockPid !== undefined) {
    markForQuarantine(root, epoch, `an MTA (pid ${staleLockPid}) ran on this path while it was a secondary`, now);
    // Marked once: the dead MTA's lock goes, or every later session would mark the node again.
    rmSync(join(root, 'mta.lock'), { force: true });
  }
  const marker = readMarker(root);
  if (!marker) return undefined;
  logger.warn({ epoch: marker.epoch, why: marker.why }, 'mirror: this node may hold mail the primary never received: its catch-up sets such bytes aside (quarantine)');
  return new QuarantineGuard(root, marker, logger);
}

async function writeDurably(file: string, data: Buffer): Promise<void> {
  const fh = await open(file, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Every directory from `dir` up to (not including) `top`, deepest first: the entries a new path adds. */
function dirsUpTo(dir: string, top: string): string[] {
  const out: string[] = [];
  for (let d = dir; d.length > top.length && d.startsWith(top); d = dirname(d)) out.push(d);
  out.push(top);
  return out;
}

/** The catch-up's guard on a marked node: stashes originals before a batch destroys them, and files the report once caught up. */
export class QuarantineGuard {
  private readonly stashed = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly marker: QuarantineMarker,
    private readonly logger: Logger,
  ) {
    // Originals stashed by an earlier, interrupted session are already safe.
    const walk = (d: string, prefix: string): void => {
      let entries;
      try {
        entries = readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory()) walk(join(d, e.name), rel);
        else this.stashed.add(rel);
      }
    };
    walk(stashDir(root), '');
  }

  /**
   * Before `ops` are applied: every append file they would cut, overwrite or
   * delete is moved or copied aside, durably; so is every small file they
   * delete (one the primary does not have is this node's alone: a report the
   * inbound listener answered 250 for, `inbound/unmatched/*.eml`). Small files
   * the primary rewrites (cursors, node-id) are its state, not kept.
   */
  async protect(ops: BatchOp[]): Promise<void> {
    for (const op of ops) {
      const kind = classify(op.path);
      if ((kind !== 'append' && !(kind === 'whole' && op.op === 'delete')) || this.stashed.has(op.path)) continue;
      const file = absolute(this.root, op.path);
      let size: number;
      try {
        size = (await stat(file)).size;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      let how: 'move' | 'copy' | undefined;
      if (op.op === 'delete') how = 'move';
      else if (op.op === 'truncate' && op.size < size) how = op.size === 0 ? 'move' : 'copy';
      else if (op.op === 'write' && op.offset < size) how = 'copy';
      else if (op.op === 'replace') how = 'copy';
      if (!how || size === 0) continue;
      const to = absolute(stashDir(this.root), op.path);
      await mkdir(dirname(to), { recursive: true });
      if (how === 'move') {
        await rename(file, to);
        fsyncDir(dirname(file));
      } else {
        await copyFile(file, to);
        await fsyncFile(to);
      }
      for (const d of dirsUpTo(dirname(to), mirrorDir(this.root))) fsyncDir(d);
      this.stashed.add(op.path);
      this.logger.warn({ path: op.path, bytes: size, op: op.op }, 'mirror: set aside a file this node held before the catch-up changes it (quarantine)');
    }
  }

  /**
   * The node is caught up: compare each original with the primary's copy,
   * keep what only this node held in a quarantine folder with its report,
   * and clear the mark. Undefined when this node held nothing of its own.
   */
  async finish(primaryEpoch: number, now: number): Promise<QuarantineReport | undefined> {
    const stamp = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    const name = `${this.marker.epoch}-${stamp}`;
    const final = join(quarantineDir(this.root), name);
    const building = `${final}.tmp`;
    await rm(building, { recursive: true, force: true });
    const files: QuarantinedFile[] = [];
    for (const rel of [...this.stashed].sort()) {
      const original = await readFile(absolute(stashDir(this.root), rel));
      const current = await readFile(absolute(this.root, rel)).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return undefined;
        throw err;
      });
      const from = current ? uniqueFrom(rel, original, current) : 0;
      if (from >= original.length) continue;
      const bytes = original.subarray(from);
      const out = absolute(building, rel);
      await mkdir(dirname(out), { recursive: true });
      await writeDurably(out, bytes);
      for (const d of dirsUpTo(dirname(out), building)) fsyncDir(d);
      files.push({ path: rel, from, bytes: bytes.length, whole_file: current === undefined, ...idsIn(rel, bytes) });
    }
    let report: QuarantineReport | undefined;
    if (files.length > 0) {
      const messages = [...new Set(files.flatMap((f) => f.messages))];
      const accepted = new Set(messages);
      const updated = [...new Set(files.flatMap((f) => f.updated))].filter((id) => !accepted.has(id));
      report = { epoch: this.marker.epoch, primary_epoch: primaryEpoch, created: new Date(now).toISOString(), why: this.marker.why, dir: final, files, messages, updated };
      await writeDurably(join(building, 'quarantine.json'), Buffer.from(`${JSON.stringify(report, null, 2)}\n`));
      fsyncDir(building);
      await rename(building, final);
      fsyncDir(quarantineDir(this.root));
      this.logger.error({ dir: final, messages: report.messages.length, updated: report.updated.length, files: files.map((f) => `${f.path}@${f.from}+${f.bytes}`), ids: report.messages.slice(0, 50) }, 'mirror: quarantined what this node alone held (see quarantine.json: these messages were accepted here and never reached the primary; not delivered)');
    } else {
      this.logger.info('mirror: caught up; this node held nothing the primary lacks (no quarantine)');
    }
    // The report is durable: the originals and the mark can go.
    await rm(pendingDir(this.root), { recursive: true, force: true });
    fsyncDir(quarantineDir(this.root));
    this.stashed.clear();
    return report;
  }
}

/**
 * A node promoted while still marked (its catch-up did not finish): it now
 * serves what it holds, so the originals already set aside are compared with
 * that and filed at once, and the mark goes (its own files are live again).
 */
export async function fileOnPromotion(root: string, epoch: number, logger: Logger, now: number): Promise<QuarantineReport | undefined> {
  const marker = readMarker(root);
  if (!marker) return undefined;
  return new QuarantineGuard(root, marker, logger).finish(epoch, now);
}

/** Where the bytes only `original` holds begin: the start of the record (spool) or line (logs) that holds the first difference. */
function uniqueFrom(rel: string, original: Buffer, current: Buffer): number {
  const n = Math.min(original.length, current.length);
  let same = 0;
  // Compare in blocks first (Buffer.compare is native), then byte by byte in the block that differs.
  const BLOCK = 65536;
  while (same + BLOCK <= n && original.compare(current, same, same + BLOCK, same, same + BLOCK) === 0) same += BLOCK;
  while (same < n && original[same] === current[same]) same++;
  if (same >= original.length) return original.length;
  if (rel.endsWith('.seg')) {
    let start = 0;
    for (const r of decodeRecords(original).records) {
      const end = r.offset + HEADER_SIZE + r.payload.length;
      if (end > same) break;
      start = end;
    }
    return start;
  }
  return same === 0 ? 0 : original.lastIndexOf(0x0a, same - 1) + 1;
}

/** The message ids named by the spool records in `bytes` (none for logs). */
function idsIn(rel: string, bytes: Buffer): { messages: string[]; updated: string[]; unparsed_bytes: number } {
  if (!rel.endsWith('.seg')) return { messages: [], updated: [], unparsed_bytes: 0 };
  const { records, skipped } = decodeRecords(bytes);
  const messages: string[] = [];
  const updated = new Set<string>();
  for (const r of records) {
    try {
      if (r.type === RecordType.Message) messages.push(String((JSON.parse(splitMessagePayload(r.payload).envelope) as { id: unknown }).id));
      else updated.add(String((JSON.parse(r.payload.toString('utf8')) as { id: unknown }).id));
    } catch {
      // A record whose JSON does not parse still sits in the quarantined bytes; it just names no id.
    }
  }
  return { messages, updated: [...updated].filter((id) => !messages.includes(id)), unparsed_bytes: skipped };
}

/** What `volley mirror status` shows: the reports on disk, and whether a catch-up still has to file one. */
export interface QuarantineSummary {
  pending: boolean;
  reports: { dir: string; created: string; messages: number; updated: number; bytes: number }[];
  messages: number;
}

export async function quarantineSummary(root: string): Promise<QuarantineSummary> {
  const base = quarantineDir(root);
  const reports: QuarantineSummary['reports'] = [];
  let names: string[] = [];
  try {
    names = (await readdir(base)).filter((n) => n !== 'pending' && !n.endsWith('.tmp')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  for (const n of names) {
    try {
      const r = JSON.parse(await readFile(join(base, n, 'quarantine.json'), 'utf8')) as QuarantineReport;
      reports.push({ dir: join(base, n), created: r.created, messages: r.messages.length, updated: r.updated.length, bytes: r.files.reduce((s, f) => s + f.bytes, 0) });
    } catch {
      reports.push({ dir: join(base, n), created: '?', messages: 0, updated: 0, bytes: 0 });
    }
  }
  return { pending: existsSync(markerPath(root)), reports, messages: reports.reduce((s, r) => s + r.messages, 0) };
}
