// Fixtures for tests that run a mirrored pair with real processes: the
// replicated files' checksums, a status poll of both daemons, and a node's
// mirror config.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { classify } from '../../runtime/mirror/files';
import type { MirrorProcess } from './mirror-process';
import { waitUntil } from './proxy-fixtures';

/** sha256 of every file the mirror replicates under root. */
export function replicatedSums(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) walk(join(d, e.name), rel);
      else if (classify(rel)) out[rel] = createHash('sha256').update(readFileSync(join(d, e.name))).digest('hex');
    }
  };
  walk(root, '');
  return out;
}

export type StatusJson = Record<string, unknown>;

/** Polls both daemons' /status (one request at a time each, over HTTP: cheaper than a CLI process per poll) until `check` holds. */
export async function untilStatus(check: (p: StatusJson, s: StatusJson) => boolean, a: string, b: string, what: string, mirrors: MirrorProcess[], timeoutMs = 60_000): Promise<[StatusJson, StatusJson]> {
  const get = async (admin: string): Promise<StatusJson> => (await (await fetch(`http://${admin}/status`)).json()) as StatusJson;
  let last: [StatusJson, StatusJson] | undefined;
  let ok = false;
  let done = false;
  const loop = (async () => {
    while (!done && !ok) {
      last = await Promise.all([get(a), get(b)]).catch(() => last);
      if (last) ok = check(last[0], last[1]);
      if (!ok) await new Promise((r) => setTimeout(r, 150));
    }
  })();
  try {
    await waitUntil(() => ok, timeoutMs, () => `${what}: ${JSON.stringify(last)}\n${mirrors.map((m) => m.log().slice(-3000)).join('\n---\n')}`);
  } finally {
    done = true;
    await loop;
  }
  return last!;
}

/** A node's mirror config file in `dir` (the secret file `mirror.secret` beside it). */
export function writeMirrorYaml(dir: string, name: string, o: { persistentPath: string; listen: number; peer: number; admin: string; tls: { certPath: string; keyPath: string; fingerprint: string }; extra?: string }): string {
  const file = join(dir, `${name}-mirror.yaml`);
  writeFileSync(
    file,
    `persistent_path: ${o.persistentPath}\nlisten: 127.0.0.1:${o.listen}\npeer: 127.0.0.1:${o.peer}\ntls: { cert: ${o.tls.certPath}, key: ${o.tls.keyPath} }\npeer_fingerprint: "${o.tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${o.admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\n${o.extra ?? ''}`,
  );
  return file;
}
