// Fixtures for HA mirror pairs run as real processes on loopback
// (test/runtime/mirror/ and the mirror benches): each node's mirror
// config, checksums of what the mirror replicates, polling both daemons'
// /status, and counting what a smtp-sink received per recipient.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { classify } from '../../runtime/mirror/files';
import type { MirrorProcess } from './mirror-process';
import { SMTP_SOURCE_BIN } from './postfix-tools';
import { childrenByParent, commandLine } from './procs';
import { waitUntil, type ProxyTls } from './proxy-fixtures';

/** Writes `<dir>/<name>-mirror.yaml` for one node of a pair (the secret at `<dir>/mirror.secret`); `extra` is appended YAML. */
export function writeMirrorYaml(dir: string, name: string, o: { pp: string; self: number; peer: number; admin: string; tls: ProxyTls; extra?: string }): string {
  const file = join(dir, `${name}-mirror.yaml`);
  writeFileSync(file, `persistent_path: ${o.pp}\nlisten: 127.0.0.1:${o.self}\npeer: 127.0.0.1:${o.peer}\ntls: { cert: ${o.tls.certPath}, key: ${o.tls.keyPath} }\npeer_fingerprint: "${o.tls.fingerprint}"\nsecret_file: mirror.secret\nadmin_listen: ${o.admin}\npoll_interval: 20ms\nreconnect_interval: 100ms\n${o.extra ?? ''}`);
  return file;
}

/** sha256 of every file the mirror replicates under root. */
export function sums(root: string): Record<string, string> {
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

export type MirrorStatusJson = Record<string, unknown> & { sync?: Record<string, unknown> };

/** One daemon's /status over HTTP. */
export async function mirrorStatus(admin: string): Promise<MirrorStatusJson> {
  return (await (await fetch(`http://${admin}/status`)).json()) as MirrorStatusJson;
}

/**
 * Polls both daemons' /status (one request at a time each, over HTTP: cheaper
 * than a CLI process per poll) until `check` holds; the failure names the last
 * statuses and the tail of `mirrors`' logs.
 */
export async function untilBoth(mirrors: MirrorProcess[], check: (p: MirrorStatusJson, s: MirrorStatusJson) => boolean, a: string, b: string, what: string, timeoutMs = 60_000): Promise<[MirrorStatusJson, MirrorStatusJson]> {
  let last: [MirrorStatusJson, MirrorStatusJson] | undefined;
  let ok = false;
  let done = false;
  const loop = (async () => {
    while (!done && !ok) {
      last = await Promise.all([mirrorStatus(a), mirrorStatus(b)]).catch(() => last);
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

/** Copies a smtp-sink dump dir holds, per recipient (the MTA names the one recipient in its Received header). */
export function copies(dumpDir: string): Map<string, number> {
  const seen = new Map<string, number>();
  for (const f of readdirSync(dumpDir)) {
    const rcpt = /\tfor <([^>]+)>/.exec(readFileSync(join(dumpDir, f), 'latin1'))?.[1];
    if (rcpt) seen.set(rcpt, (seen.get(rcpt) ?? 0) + 1);
  }
  return seen;
}

/** This process's smtp-source children still running. */
export function smtpSources(): number[] {
  return (childrenByParent().get(process.pid) ?? []).filter((pid) => {
    try {
      return commandLine(pid)[0] === SMTP_SOURCE_BIN;
    } catch {
      return false;
    }
  });
}
