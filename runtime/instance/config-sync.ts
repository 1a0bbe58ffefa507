// `volley config sync`: what volley-config-sync.timer runs on every instance
// (and install.sh once at boot). It fetches the config published with the last
// deploy (an SSM parameter holding either the S3 URL of the MTAs' shared file
// or a proxy's own file), and when it differs from the installed one installs
// it atomically and reloads the role's unit. In TypeScript with SDK v3 rather
// than the `aws` CLI: it honours AWS_ENDPOINT_URL_* on any image (Debian's
// awscli 2.9 does not), and needs nothing on the image but Node.
import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { chmod, open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { SECRET_FILES_DIR } from '../bootstrap/secret-files';
import { parseMirrorConfig } from '../mirror/config';
import { parseProxyConfig } from '../proxy/config';
import { parseConfig } from '../shared/config/load';
import { VolleyError } from '../shared/errors';

export interface ConfigSyncSettings {
  /** Whose config: the instance's daemon, or (a node of an HA pair) its mirror's, volley-mirror.service. */
  readonly role: 'mta' | 'proxy' | 'mirror';
  readonly region: string;
  readonly parameter: string;
  /** s3-url: the parameter holds the S3 URL of the file; inline: the file itself. */
  readonly source: 's3-url' | 'inline';
  /** Where the config is installed (the path the role's unit starts the daemon with). */
  readonly target: string;
}

/** The KEY=value lines of /etc/volley/instance.env (user data writes them, unquoted). */
export function parseInstanceEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const at = line.indexOf('=');
    if (at <= 0) throw new VolleyError('EINSTANCEENV', `instance.env: not KEY=value: "${line}"`);
    env[line.slice(0, at)] = line.slice(at + 1);
  }
  return env;
}

/**
 * What to sync, from instance.env. `etc` roots /etc/volley elsewhere, as
 * VOLLEY_ETC did for the shell script (tests, the rehearsal's instances).
 */
export function syncSettings(env: Record<string, string | undefined>, etc = '/etc/volley'): ConfigSyncSettings {
  const need = (key: string): string => {
    const value = env[key];
    if (!value) throw new VolleyError('EINSTANCEENV', `instance.env: ${key} is missing`);
    return value;
  };
  const role = need('VOLLEY_ROLE');
  if (role !== 'mta' && role !== 'proxy') throw new VolleyError('EINSTANCEENV', `instance.env: VOLLEY_ROLE must be mta or proxy (got "${role}")`);
  const source = env.VOLLEY_CONFIG_SOURCE || 's3-url';
  if (source !== 's3-url' && source !== 'inline') throw new VolleyError('EINSTANCEENV', `instance.env: VOLLEY_CONFIG_SOURCE must be s3-url or inline (got "${source}")`);
  const file = env.VOLLEY_CONFIG_FILE || '/etc/volley/volley.yaml';
  const target = join(etc, file.startsWith('/etc/volley/') ? file.slice('/etc/volley/'.length) : basename(file));
  return { role, region: need('VOLLEY_REGION'), parameter: need('VOLLEY_CONFIG_PARAMETER'), source, target };
}

/**
 * A node of an HA pair has a second config, its mirror's, published inline
 * per node (VOLLEY_MIRROR_CONFIG_PARAMETER) and installed where
 * VOLLEY_MIRROR_CONFIG says; undefined on any other instance.
 */
export function mirrorSyncSettings(env: Record<string, string | undefined>, etc = '/etc/volley'): ConfigSyncSettings | undefined {
  const parameter = env.VOLLEY_MIRROR_CONFIG_PARAMETER;
  if (!parameter) return undefined;
  const region = env.VOLLEY_REGION;
  if (!region) throw new VolleyError('EINSTANCEENV', 'instance.env: VOLLEY_REGION is missing');
  const file = env.VOLLEY_MIRROR_CONFIG || '/etc/volley/mirror.yaml';
  const target = join(etc, file.startsWith('/etc/volley/') ? file.slice('/etc/volley/'.length) : basename(file));
  return { role: 'mirror', region, parameter, source: 'inline', target };
}

export interface ConfigSyncDeps {
  readonly ssm: Pick<SSMClient, 'send'>;
  readonly s3: Pick<S3Client, 'send'>;
  /** Runs `systemctl ARGS...`, resolving to its exit status. */
  readonly systemctl: (args: readonly string[]) => Promise<number>;
  readonly log: (line: string) => void;
  /** The role's own loader: throws, naming what is wrong, on a file the daemon would refuse. */
  readonly check: (text: string, file: string) => void;
  /**
   * The MTA's own secret files (`volley secret-files fetch`), resolving to
   * whether one changed: run before the config is checked, so a config that
   * names a new DKIM key finds it, and a changed file reloads the MTA even when
   * the config did not (a rotated key takes effect on this tick).
   */
  readonly fetchFiles?: () => Promise<boolean>;
}

/**
 * The check a role's daemon applies to its config file. Run before the file is
 * installed: a reload that refuses it would keep the running config but report
 * nothing to the sync, which would then see "no change" and never try again.
 */
export function roleCheck(role: ConfigSyncSettings['role'], secretsDir?: string): ConfigSyncDeps['check'] {
  if (role === 'mirror') return (text, file) => void parseMirrorConfig(text, file);
  if (role === 'proxy') return (text, file) => void parseProxyConfig(text, file);
  return (text, file) => {
    const config = parseConfig(text, file);
    if (secretsDir !== undefined) checkSecretFilesNamed(config, secretsDir);
  };
}

/**
 * Every file under /etc/volley/secrets/ the MTA config names (DKIM keys,
 * webhook secrets and CAs, the VERP key, TLS pairs: the operator's secret
 * files) is on disk, under `secretsDir`, and not empty. The loader does not
 * read them; the MTA does, at a refresh and at its start, and one missing
 * there would make the next restart fail. A config sync installs the
 * published config even when the secret files' fetch failed, so this is what
 * stops one naming a file that fetch did not bring.
 */
function checkSecretFilesNamed(config: unknown, secretsDir: string): void {
  const named = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string' && v.startsWith(SECRET_FILES_DIR)) named.add(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
  };
  walk(config);
  const missing = [...named].sort().filter((path) => {
    try {
      return statSync(join(secretsDir, path.slice(SECRET_FILES_DIR.length))).size === 0;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) throw new VolleyError('ECONFIGSYNC', `names secret files that are not on this instance (or empty): ${missing.join(', ')}; they come from the secrets of mta.fileSecrets (volley secret-files fetch)`);
}

export interface SyncResult {
  readonly installed: boolean;
  readonly reloaded: boolean;
  readonly from: string;
}

function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(url.trim());
  if (!m) throw new VolleyError('ECONFIGSYNC', `the parameter does not hold an s3:// URL (got "${url.slice(0, 200)}")`);
  return { bucket: m[1] as string, key: m[2] as string };
}

async function fetchConfig(settings: ConfigSyncSettings, deps: ConfigSyncDeps): Promise<{ body: Buffer; from: string }> {
  const out = await deps.ssm.send(new GetParameterCommand({ Name: settings.parameter }));
  const value = out.Parameter?.Value;
  if (value === undefined) throw new VolleyError('ECONFIGSYNC', `SSM parameter ${settings.parameter} has no value`);
  if (settings.source === 'inline') {
    // As `aws ssm get-parameter --output text > file` wrote it: the value and one newline.
    return { body: Buffer.from(value.endsWith('\n') ? value : `${value}\n`), from: settings.parameter };
  }
  const { bucket, key } = parseS3Url(value);
  const object = await deps.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  if (!object.Body) throw new VolleyError('ECONFIGSYNC', `${value}: empty response`);
  return { body: Buffer.from(await object.Body.transformToByteArray()), from: value };
}

async function readIfExists(path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Written beside the target, synced, then renamed over it: a reader sees the old file or the new, never half. */
async function installAtomically(target: string, body: Buffer): Promise<void> {
  const partial = join(dirname(target), `.${basename(target)}.${process.pid}.partial`);
  try {
    const fh = await open(partial, 'w', 0o644);
    try {
      await fh.writeFile(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await chmod(partial, 0o644); // not narrowed by the umask: the daemon's user reads it
    await rename(partial, target);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

/**
 * Whether the mirror would run `fetched` exactly as it runs `installed`: the
 * same settings once parsed, whatever the bytes (the generated header, a
 * comment, key order, a default now written out). volley-mirror.service has no
 * reload (the daemon reads its config only at start), so reload-or-restart
 * restarts it: on a pair in sync mode that is 451s (block) or mail acknowledged
 * unreplicated (degrade) for the restart's length, on both nodes at once when a
 * deploy changes the generated text of both. A file the loader refused before
 * is not the same: a restart then is what applies the fix.
 */
function sameMirrorConfig(installed: Buffer, fetched: Buffer, file: string): boolean {
  try {
    return isDeepStrictEqual(parseMirrorConfig(installed.toString('utf8'), file), parseMirrorConfig(fetched.toString('utf8'), file));
  } catch {
    return false;
  }
}

/**
 * One sync. A fetch failure changes nothing; an unchanged config does
 * nothing; a changed one is installed and the unit reloaded if it runs (the
 * MTA and the proxy reload in place, and one that refuses the file keeps its
 * running config; the file stays so the next deploy's fix is picked up). The
 * mirror cannot reload, only restart: it is restarted only when its settings
 * changed, never for a file that differs in bytes alone.
 *
 * The MTA's secret files are the operator's and change outside any deploy: a
 * secret broken by hand fails the tick (the timer's unit shows failed, the
 * journal says why) but does not hold back the deploy's config, which is
 * still checked (against the files on disk, so one naming a file that is
 * not there is refused anyway) and installed.
 */
export async function syncConfig(settings: ConfigSyncSettings, deps: ConfigSyncDeps): Promise<SyncResult> {
  let filesChanged = false;
  let filesFailure: unknown;
  try {
    filesChanged = deps.fetchFiles ? await deps.fetchFiles() : false;
  } catch (err) {
    filesFailure = err;
    deps.log(`volley config sync: the MTA's secret files were not fetched (the files on disk stay; the config is still synced): ${(err as Error).message}`);
  }
  const result = await syncPublished(settings, deps, filesChanged);
  if (filesFailure !== undefined) {
    const config = result.installed ? `${settings.target} was installed from ${result.from}` : `${settings.target} is unchanged`;
    throw new VolleyError('ECONFIGSYNC', `the MTA's secret files were not fetched, the files on disk stay (${config}): ${(filesFailure as Error).message}`, { cause: filesFailure });
  }
  return result;
}

/** The published config: fetched, checked, installed and the unit reloaded as syncConfig says. */
async function syncPublished(settings: ConfigSyncSettings, deps: ConfigSyncDeps, filesChanged: boolean): Promise<SyncResult> {
  const { body, from } = await fetchConfig(settings, deps);
  const current = await readIfExists(settings.target);
  if (current?.equals(body)) {
    if (!filesChanged) return { installed: false, reloaded: false, from };
    // The running config names the same files, whose content changed: a refresh re-reads them.
    return { installed: false, reloaded: await reloadIfActive(settings, deps, 'the secret files changed'), from };
  }
  try {
    deps.check(body.toString('utf8'), settings.target);
  } catch (err) {
    // Not installed: the running config and file stay, this sync fails (the
    // timer's unit shows failed, the journal says why), and the next tick
    // tries again, so the deploy that fixes the file is picked up.
    throw new VolleyError('ECONFIGSYNC', `the config from ${from} is refused by the ${settings.role}'s loader; ${settings.target} and the running config are unchanged:\n${(err as Error).message}`);
  }
  await installAtomically(settings.target, body);
  deps.log(`volley config sync: installed ${settings.target} from ${from}`);
  const unit = `volley-${settings.role}.service`;
  if (settings.role === 'mirror' && current && sameMirrorConfig(current, body, settings.target)) {
    deps.log(`volley config sync: the mirror's settings are unchanged (the file differs only in text): ${unit} is not restarted`);
    return { installed: true, reloaded: false, from };
  }
  return { installed: true, reloaded: await reloadIfActive(settings, deps, `${settings.target} is installed`), from };
}

/** Reloads the role's unit if it runs (one that does not reads everything at its start); `done` says what stays done on a failure. */
async function reloadIfActive(settings: ConfigSyncSettings, deps: ConfigSyncDeps, done: string): Promise<boolean> {
  const unit = `volley-${settings.role}.service`;
  if ((await deps.systemctl(['is-active', '--quiet', unit])) !== 0) return false;
  const status = await deps.systemctl(['reload-or-restart', unit]);
  if (status !== 0) throw new VolleyError('ECONFIGSYNC', `systemctl reload-or-restart ${unit} failed (${status}); ${done}`);
  deps.log(`volley config sync: reloaded ${unit}`);
  return true;
}

/**
 * `systemctl` from PATH (systemd's, or the rehearsal's shim), resolving to its
 * exit status; its own messages go to our stderr (the unit's journal).
 */
export function runSystemctl(args: readonly string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('systemctl', [...args], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', (err) => reject(new VolleyError('ECONFIGSYNC', `systemctl: ${err.message}`)));
    child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
