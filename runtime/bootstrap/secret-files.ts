// The MTA's own secret files (DKIM keys, webhook secrets, the VERP key, TLS
// pairs) on an instance, from Secrets Manager secrets the operator creates and
// lists in the environment file (mta.fileSecrets). Each holds
// `{"files": {"/etc/volley/secrets/<path>": "<file text>", ...}}`; several
// secrets because one holds at most 64 KB. `volley secret-files fetch` runs
// before each MTA start (volley-mta.service) and in every `volley config sync`
// tick: it writes each file root-owned 0640 for the daemon's group (the MTA
// reads it, nothing more), in directories root owns (0750), replaced atomically,
// removes the files it wrote before that no secret lists any more (its own
// manifest says which: a file the operator put there by hand is never
// removed), and reports the paths that changed, never a value. Before a start,
// any failure keeps the whole files on disk, with a warning (see atStart); in
// a sync tick only AWS unreachable does, as for the proxy link's and the
// drain's files.
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { constants, type Stats } from 'node:fs';
import { chmod, type FileHandle, lchown, lstat, mkdir, open, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { VolleyError } from '../shared/errors';
import { readSecretString, withFallback, type FileOwner } from './proxy-link';

/** Where every fetched file lives on an instance: none of the generated files (proxy link, drain, mirror) is under it. */
export const SECRET_FILES_DIR = '/etc/volley/secrets/';

/**
 * Which files this command wrote, kept beside them. A dot file: no listed path
 * may start a segment with a dot, so no secret can name (and overwrite) it.
 */
export const MANIFEST_NAME = '.volley-secret-files.json';

/** One segment of a relative path: no dot files, no `..`, nothing a shell or a YAML value needs quoting for. */
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** Secrets Manager's own name charset; an environment's names start with `volley/<env>/`. */
export const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;

function fail(message: string): never {
  throw new VolleyError('ESECRETFILES', message);
}

/**
 * The part of `path` under /etc/volley/secrets/, or why it is refused. Checked
 * here, not at synth: the paths are in the operator's secret, which the stack
 * never sees.
 */
export function secretFilePath(path: string): { relative: string } | { problem: string } {
  if (!path.startsWith(SECRET_FILES_DIR)) return { problem: `is not under ${SECRET_FILES_DIR}` };
  const relative = path.slice(SECRET_FILES_DIR.length);
  // Normalised means written as it resolves: a `..`, `.`, `//` or trailing slash could aim elsewhere than it reads.
  const segments = relative.split('/');
  if (segments.includes('..')) return { problem: 'leaves the directory (a ".." segment)' };
  if (segments.includes('') || posix.normalize(relative) !== relative) return { problem: 'is not a normalised file path' };
  const bad = segments.find((s) => !SEGMENT.test(s));
  if (bad !== undefined) return { problem: `has a segment "${bad.slice(0, 64)}" outside [A-Za-z0-9._-] (or starting with a dot)` };
  return { relative };
}

/** One secret's files, relative path -> text. Errors name the secret and the path, never a value. */
export function parseFileSecret(text: string, secretId: string): Map<string, string> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    fail(`secret ${secretId}: not JSON (expected {"files": {"${SECRET_FILES_DIR}<name>": "<file text>"}})`);
  }
  const files = typeof doc === 'object' && doc !== null && !Array.isArray(doc) ? (doc as Record<string, unknown>).files : undefined;
  if (typeof files !== 'object' || files === null || Array.isArray(files)) fail(`secret ${secretId}: expected {"files": {"${SECRET_FILES_DIR}<name>": "<file text>"}}`);
  const out = new Map<string, string>();
  for (const [path, value] of Object.entries(files as Record<string, unknown>)) {
    const shown = JSON.stringify(path.slice(0, 200));
    const checked = secretFilePath(path);
    if ('problem' in checked) fail(`secret ${secretId}: file ${shown} ${checked.problem}`);
    if (typeof value !== 'string' || value.length === 0) fail(`secret ${secretId}: file ${shown} must be a non-empty string (the file's text)`);
    out.set(checked.relative, value as string);
  }
  return out;
}

/** What one fetch changed, as paths under the directory (sorted). */
export interface SecretFilesChange {
  readonly written: readonly string[];
  readonly removed: readonly string[];
}

export interface SecretFilesOptions {
  /** /etc/volley/secrets/ on an instance; elsewhere in tests. Listed paths keep their /etc/volley/secrets/ spelling. */
  readonly dir?: string;
  readonly owner?: FileOwner;
  readonly warn: (message: string) => void;
  /**
   * Before an MTA start (ExecStartPre): ANY failure (a secret deleted, access
   * denied, a disabled KMS key, a malformed value, not only AWS unreachable)
   * keeps the whole files on disk with a warning. The secrets are the
   * operator's and change outside any deploy: one broken by hand must not stop
   * every crash restart, reboot, new instance or HA failover. Elsewhere (a
   * config sync tick) only "unreachable" does; any other failure is the tick's.
   */
  readonly atStart?: boolean;
}

/**
 * Who the tree belongs to: the fetch's own user (root on an instance), with
 * the daemon's group. Root owns every directory, file and the manifest, so no
 * process of the daemon's user can swap a directory for a link the next
 * (root) fetch would write, chown or delete through; the group reads.
 */
interface TreeOwner {
  readonly uid: number;
  readonly gid: number;
}

function treeOwner(owner?: FileOwner): TreeOwner {
  return { uid: process.geteuid?.() ?? 0, gid: owner?.gid ?? process.getegid?.() ?? 0 };
}

/** Directories: the daemon's group enters and lists them, only root changes them. */
const DIR_MODE = 0o750;
/** Files: the MTA (User=volley) only reads them; owning them would also let it chmod a key world-readable or rewrite it in place. */
const FILE_MODE = 0o640;
/** The manifest: root's alone (it tells root what to delete). */
const MANIFEST_MODE = 0o600;

const NOFOLLOW_READ = constants.O_RDONLY | constants.O_NOFOLLOW;

/** The text of a regular file that is not a link, with its stat; undefined when there is none (or a link, which is replaced, never read through). */
async function readPlain(path: string): Promise<{ text: string; stat: Stats } | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, NOFOLLOW_READ);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP') return undefined;
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) return undefined;
    return { text: await handle.readFile('utf8'), stat: st };
  } finally {
    await handle.close();
  }
}

async function readManifest(dir: string, tree: TreeOwner): Promise<string[] | undefined> {
  const path = join(dir, MANIFEST_NAME);
  let handle: FileHandle;
  try {
    handle = await open(path, NOFOLLOW_READ);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') fail(`${path} is a link, not a manifest this command wrote; remove it once the files it should list are checked by hand`);
    throw err;
  }
  let text: string;
  try {
    // It says what root deletes: one anyone else could have written is not believed.
    const st = await handle.stat();
    if (!st.isFile() || st.uid !== tree.uid || (st.mode & 0o022) !== 0) fail(`${path} is not owned by uid ${tree.uid} and writable by it alone, so it is not a manifest this command wrote; remove it once the files it should list are checked by hand`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let doc: { files?: unknown } = {};
  try {
    doc = JSON.parse(text) as { files?: unknown };
  } catch {
    // reported below
  }
  if (!Array.isArray(doc?.files) || doc.files.some((f) => typeof f !== 'string' || 'problem' in secretFilePath(SECRET_FILES_DIR + f))) {
    fail(`${path} is not a manifest this command wrote; remove it once the files it should list are checked by hand`);
  }
  return doc.files as string[];
}

/**
 * Writes `path` with `mode` for `tree`, replacing whatever is there (a link
 * included: the rename replaces it, never follows it) in one rename. The
 * partial file is created fresh (O_EXCL, O_NOFOLLOW): nothing planted under its
 * name is written through.
 */
async function writeTreeFile(path: string, content: string, mode: number, tree: TreeOwner): Promise<void> {
  const partial = `${path}.partial-${process.pid}`;
  await rm(partial, { force: true });
  const handle = await open(partial, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
  try {
    await handle.writeFile(content);
    await handle.chown(tree.uid, tree.gid);
    await handle.chmod(mode); // whatever the umask
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

async function writeManifest(dir: string, files: Iterable<string>, tree: TreeOwner): Promise<void> {
  await writeTreeFile(join(dir, MANIFEST_NAME), `${JSON.stringify({ files: [...new Set(files)].sort() })}\n`, MANIFEST_MODE, tree);
}

/** Whether `st` is a file this command would have written: mode and owners as it writes them. */
function asWritten(st: Stats, tree: TreeOwner): boolean {
  return (st.mode & 0o777) === FILE_MODE && st.uid === tree.uid && st.gid === tree.gid;
}

/** Why `path` (a directory of the tree) cannot be trusted, or undefined when it is a real directory owned by `tree`. */
function untrustedDir(path: string, st: Stats, tree: TreeOwner): string | undefined {
  if (st.isSymbolicLink()) return `${path} is a link, not a directory`;
  if (!st.isDirectory()) return `${path} is not a directory`;
  if (st.uid !== tree.uid) return `${path} is owned by uid ${st.uid}, not ${tree.uid}`;
  if ((st.mode & 0o022) !== 0) return `${path} is writable by others than its owner`;
  return undefined;
}

/**
 * Walks the directory `relative` under `root` (and `root` itself), each
 * segment checked with lstat to be a real directory the tree's owner owns: a
 * link, a file or a directory someone else owns is refused, never followed,
 * chowned, written or deleted through (whoever could put it there could aim
 * it anywhere). `create` makes a missing segment root:group 0750; without it,
 * a missing one ends the walk: false.
 */
async function walkTree(root: string, relative: string, tree: TreeOwner, create: boolean, doing: string): Promise<boolean> {
  let at = root;
  for (const segment of ['', ...relative.split('/').filter((s) => s !== '' && s !== '.')]) {
    at = join(at, segment);
    let st: Stats;
    try {
      st = await lstat(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!create) return false;
      await mkdir(at, { mode: DIR_MODE });
      // lchown: it changes what was just made, never a link's target.
      await lchown(at, tree.uid, tree.gid);
      await chmod(at, DIR_MODE); // whatever the umask; a real directory only root can replace (its parent is checked)
      st = await lstat(at);
    }
    const problem = untrustedDir(at, st, tree);
    if (problem !== undefined) fail(`${problem}: refusing ${doing} through it; remove it by hand (a fetch makes it again, root's)`);
    if (create && (st.gid !== tree.gid || (st.mode & 0o777) !== DIR_MODE)) {
      // Root's own directory made by hand (root:root 0700, say): the daemon's group must enter it. Safe: only root can replace it.
      await lchown(at, tree.uid, tree.gid);
      await chmod(at, DIR_MODE);
    }
  }
  return true;
}

/**
 * Removes the file a stale manifest entry names, never through a link (`rm` of
 * the last segment removes a link itself). What is already gone is done; a
 * directory there now (the path became a directory of listed files, or
 * someone made one) is not the file this command wrote, and is left alone.
 */
async function removeStale(root: string, relative: string, tree: TreeOwner): Promise<boolean> {
  if (!(await walkTree(root, dirname(relative), tree, false, `to remove ${join(root, relative)}`))) return false; // already gone with its directory
  const path = join(root, relative);
  try {
    if ((await lstat(path)).isDirectory()) return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  await rm(path, { force: true });
  return true;
}

/**
 * The directories the stale files leave empty, deepest first, removed unless
 * a listed file is under one: a path that was `webhook/hooks.secret` can then
 * become the file `webhook`. rmdir never follows a link and never removes a
 * directory that still holds something (a file put there by hand keeps it).
 */
async function pruneEmptyDirs(root: string, stale: readonly string[], listed: ReadonlySet<string>): Promise<void> {
  const keep = new Set([...listed].flatMap(ancestors));
  const dirs = [...new Set(stale.flatMap(ancestors))].filter((d) => !keep.has(d)).sort((x, y) => y.split('/').length - x.split('/').length);
  for (const d of dirs) {
    await rmdir(join(root, d)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST' && err.code !== 'ENOTDIR') throw err;
    });
  }
}

/** The directories above a relative path: `a/b/c` -> `a`, `a/b`. */
function ancestors(relative: string): string[] {
  const segments = relative.split('/');
  return segments.slice(0, -1).map((_, i) => segments.slice(0, i + 1).join('/'));
}

/** Two listed paths where one is a directory of the other (`webhook` and `webhook/a.secret`): no disk can hold both. */
export function fileAndDirectory(paths: Iterable<string>): [file: string, under: string] | undefined {
  const all = new Set(paths);
  for (const path of all) {
    const dir = ancestors(path).find((d) => all.has(d));
    if (dir !== undefined) return [dir, path];
  }
  return undefined;
}

/**
 * Writes `files` (the union of every secret) and removes what an earlier run
 * wrote that is no longer listed. The stale files go first (with the
 * directories they leave empty), so a path can turn from a file into a
 * directory or back. The manifest is rewritten only once what it then says is
 * true: after the removals (the files still listed), then after the writes
 * (every listed file), so a run that fails half-way never lists a file it did
 * not write, nor keeps listing one it removed.
 */
export async function installSecretFiles(files: ReadonlyMap<string, string>, options: Omit<SecretFilesOptions, 'warn'>): Promise<SecretFilesChange> {
  const both = fileAndDirectory(files.keys());
  if (both) fail(`file ${SECRET_FILES_DIR}${both[0]} would be a directory of ${SECRET_FILES_DIR}${both[1]}: a path is a file or a directory, not both`);
  const dir = options.dir ?? SECRET_FILES_DIR;
  const tree = treeOwner(options.owner);
  await walkTree(dir, '', tree, true, 'to write the secret files');
  const before = (await readManifest(dir, tree)) ?? [];
  const stale = before.filter((f) => !files.has(f));
  const removed: string[] = [];
  for (const relative of stale) if (await removeStale(dir, relative, tree)) removed.push(relative);
  await pruneEmptyDirs(dir, stale, new Set(files.keys()));
  if (stale.length > 0) await writeManifest(dir, before.filter((f) => files.has(f)), tree);
  const written: string[] = [];
  for (const [relative, text] of files) {
    const path = join(dir, relative);
    await walkTree(dir, dirname(relative), tree, true, `to write ${path}`);
    // Unchanged bytes are not rewritten: the report (and the reload it triggers) then means a real change.
    // A file whose mode or owner someone changed is rewritten: the daemon's group must read it, no one else.
    const current = await readPlain(path);
    if (current?.text === text && asWritten(current.stat, tree)) continue;
    await writeTreeFile(path, text, FILE_MODE, tree).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EISDIR' || err.code === 'ENOTEMPTY' || err.code === 'EEXIST') fail(`${path} is a directory this command did not fill: remove it by hand to write the file there`);
      throw err;
    });
    written.push(relative);
  }
  if ([...files.keys()].some((f) => !before.includes(f)) || stale.length > 0) await writeManifest(dir, files.keys(), tree);
  return { written: written.sort(), removed: removed.sort() };
}

/** Whether the files on disk can serve a start while AWS is unreachable: every one the last fetch wrote is there and not empty. */
async function checkSecretFiles(dir: string, tree: TreeOwner): Promise<void> {
  const listed = await readManifest(dir, tree);
  if (listed === undefined) throw new Error(`no earlier fetch: ${join(dir, MANIFEST_NAME)} does not exist`);
  for (const relative of listed) {
    const file = (await walkTree(dir, dirname(relative), tree, false, `to read ${join(dir, relative)}`)) ? await readPlain(join(dir, relative)) : undefined;
    if (!file?.text) throw new Error(`${join(dir, relative)} is missing or empty`);
  }
}

/**
 * `volley secret-files fetch`: every listed secret read first (a failure
 * writes nothing), then installed. A path listed by two secrets is refused:
 * which one wins would depend on the order of the list.
 */
export async function fetchSecretFiles(client: SecretsManagerClient, secretIds: readonly string[], options: SecretFilesOptions): Promise<{ result: 'written' | 'kept'; change: SecretFilesChange }> {
  const dir = options.dir ?? SECRET_FILES_DIR;
  const check = (): Promise<void> => checkSecretFiles(dir, treeOwner(options.owner));
  let change: SecretFilesChange = { written: [], removed: [] };
  const write = async (): Promise<void> => {
    const all = new Map<string, string>();
    const from = new Map<string, string>();
    for (const id of secretIds) {
      // readSecretString fails with the proxy link's "unreachable" code when AWS does not answer: the fallback keys on it.
      for (const [relative, text] of parseFileSecret(await readSecretString(client, id), id)) {
        const other = from.get(relative);
        if (other !== undefined) fail(`file ${SECRET_FILES_DIR}${relative} is in both secret ${other} and secret ${id}: keep each file in one secret`);
        from.set(relative, id);
        all.set(relative, text);
      }
    }
    const both = fileAndDirectory(all.keys());
    if (both) fail(`file ${SECRET_FILES_DIR}${both[0]} (secret ${from.get(both[0])}) would be a directory of ${SECRET_FILES_DIR}${both[1]} (secret ${from.get(both[1])}): a path is a file or a directory, not both`);
    change = await installSecretFiles(all, { dir, owner: options.owner });
  };
  if (!options.atStart) return { result: await withFallback(write, check, [join(dir, '*')], options.warn), change };
  try {
    await write();
    return { result: 'written', change };
  } catch (err) {
    const message = (err as Error).message;
    const problem = await check().then(
      () => undefined,
      (e: unknown) => (e as Error).message,
    );
    // A first boot (or files gone) has nothing to fall back on: the start fails, saying both why.
    if (problem !== undefined) throw new VolleyError('ESECRETFILES', `${message}; the files on disk cannot be used instead: ${problem}`, { cause: err });
    options.warn(`${message} (secrets: ${secretIds.join(', ')}); starting with the files already on disk (${join(dir, '*')}), as the last fetch wrote them, which may predate a change to these secrets`);
    return { result: 'kept', change: { written: [], removed: [] } };
  }
}
