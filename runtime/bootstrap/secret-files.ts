// The MTA's own secret files (DKIM keys, webhook secrets, the VERP key, TLS
// pairs) on an instance, from Secrets Manager secrets the operator creates and
// lists in the environment file (mta.fileSecrets). Each holds
// `{"files": {"/etc/volley/secrets/<path>": "<file text>", ...}}`; several
// secrets because one holds at most 64 KB. `volley secret-files fetch` runs
// before each MTA start (volley-mta.service) and in every `volley config sync`
// tick: it writes each file 0600 for the daemon's user, replaced atomically,
// removes the files it wrote before that no secret lists any more (its own
// manifest says which: a file the operator put there by hand is never
// removed), and reports the paths that changed, never a value. When AWS cannot
// be reached the whole files on disk are kept, with a warning, as the proxy
// link's and the drain's are.
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { chown, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { VolleyError } from '../shared/errors';
import { readSecretString, withFallback, writePrivateFile, type FileOwner } from './proxy-link';

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
}

async function readManifest(dir: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_NAME), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  let doc: { files?: unknown } = {};
  try {
    doc = JSON.parse(text) as { files?: unknown };
  } catch {
    // reported below
  }
  if (!Array.isArray(doc?.files) || doc.files.some((f) => typeof f !== 'string' || 'problem' in secretFilePath(SECRET_FILES_DIR + f))) {
    fail(`${join(dir, MANIFEST_NAME)} is not a manifest this command wrote; remove it once the files it should list are checked by hand`);
  }
  return doc.files as string[];
}

async function writeManifest(dir: string, files: Iterable<string>, owner?: FileOwner): Promise<void> {
  await writePrivateFile(join(dir, MANIFEST_NAME), `${JSON.stringify({ files: [...new Set(files)].sort() })}\n`, owner);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Whether `path` is 0600 and (when given) owned by `owner`. */
async function privateTo(path: string, owner?: FileOwner): Promise<boolean> {
  const st = await stat(path);
  return (st.mode & 0o777) === 0o600 && (!owner || (st.uid === owner.uid && st.gid === owner.gid));
}

/** A directory only the daemon's user reads (keys inside), created with its parents under `root`. */
async function privateDir(root: string, relative: string, owner?: FileOwner): Promise<void> {
  let at = root;
  for (const segment of ['', ...relative.split('/').filter((s) => s !== '' && s !== '.')]) {
    at = join(at, segment);
    await mkdir(at, { mode: 0o700, recursive: true });
    if (owner) await chown(at, owner.uid, owner.gid);
  }
}

/**
 * Writes `files` (the union of every secret) and removes what an earlier run
 * wrote that is no longer listed. The manifest first names every file that is
 * about to exist, and is narrowed only once the stale ones are gone, so an
 * interruption at any point leaves no file of ours untracked.
 */
export async function installSecretFiles(files: ReadonlyMap<string, string>, options: Omit<SecretFilesOptions, 'warn'>): Promise<SecretFilesChange> {
  const dir = options.dir ?? SECRET_FILES_DIR;
  await privateDir(dir, '', options.owner);
  const before = await readManifest(dir);
  const written: string[] = [];
  const stale = before.filter((f) => !files.has(f));
  if ([...files.keys()].some((f) => !before.includes(f))) await writeManifest(dir, [...before, ...files.keys()], options.owner);
  for (const [relative, text] of files) {
    const path = join(dir, relative);
    // Unchanged bytes are not rewritten: the report (and the reload it triggers) then means a real change.
    // A file whose mode or owner someone changed is rewritten: the daemon's user must read it, no one else.
    if ((await readIfExists(path)) === text && (await privateTo(path, options.owner))) continue;
    await privateDir(dir, dirname(relative), options.owner);
    await writePrivateFile(path, text, options.owner);
    written.push(relative);
  }
  for (const relative of stale) await rm(join(dir, relative), { force: true });
  if (stale.length > 0) await writeManifest(dir, files.keys(), options.owner);
  return { written: written.sort(), removed: stale.sort() };
}

/** Whether the files on disk can serve a start while AWS is unreachable: every one the last fetch wrote is there and not empty. */
async function checkSecretFiles(dir: string): Promise<void> {
  const listed = await readManifest(dir);
  if (listed.length === 0 && (await readIfExists(join(dir, MANIFEST_NAME))) === undefined) throw new Error(`no earlier fetch: ${join(dir, MANIFEST_NAME)} does not exist`);
  for (const relative of listed) {
    const text = await readIfExists(join(dir, relative));
    if (!text) throw new Error(`${join(dir, relative)} is missing or empty`);
  }
}

/**
 * `volley secret-files fetch`: every listed secret read first (a failure
 * writes nothing), then installed. A path listed by two secrets is refused:
 * which one wins would depend on the order of the list.
 */
export async function fetchSecretFiles(client: SecretsManagerClient, secretIds: readonly string[], options: SecretFilesOptions): Promise<{ result: 'written' | 'kept'; change: SecretFilesChange }> {
  const dir = options.dir ?? SECRET_FILES_DIR;
  let change: SecretFilesChange = { written: [], removed: [] };
  const result = await withFallback(
    async () => {
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
      change = await installSecretFiles(all, { dir, owner: options.owner });
    },
    () => checkSecretFiles(dir),
    [join(dir, '*')],
    options.warn,
  );
  return { result, change };
}
