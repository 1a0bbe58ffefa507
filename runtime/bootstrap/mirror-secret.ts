// The HA mirror's secrets on a node of an MTA pair, from the environment's
// `volley/<env>/mirror` Secrets Manager secret (stacks/secrets-stack.ts):
// the link's HMAC secret (both nodes prove it, as the proxy link's) and the
// mirror CA. Before each mirror start (volley-mirror.service) `volley
// mirror-secret fetch` writes, where the node's mirror config points, the
// secret (secret_file), the CA its peer's certificate is checked against
// (peer_ca), and a certificate for the node's own mirror address (its
// `listen` IP, the fixed IP of its mirror interface) issued by that CA
// (tls.cert/key): so each node knows the one answering on its peer's address
// is a node of this environment's pairs. The secret has the drain secret's
// shape and handling (runtime/bootstrap/drain-secret.ts): `init` adds the CA
// once, files are 0600 for the daemon's user, and when AWS cannot be reached
// whole files on disk are kept, with a warning.
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { MirrorConfig } from '../mirror/config';
import { VolleyError } from '../shared/errors';
import { fetchDrainFiles, initDrainSecret, type CaSecretKind, type DrainFiles } from './drain-secret';
import type { FileOwner } from './proxy-link';

export const MIRROR_SECRET_KIND: CaSecretKind = { name: 'mirror', code: 'EMIRRORSECRET', command: 'volley mirror-secret' };

/** The files a mirror config names, and the address its certificate is for: all come from the config, none is assumed. */
export function mirrorFiles(config: Pick<MirrorConfig, 'secretFile' | 'peerCa' | 'tls' | 'listen'>, file: string): DrainFiles {
  const missing = [config.secretFile ? undefined : 'secret_file', config.peerCa ? undefined : 'peer_ca'].filter((m) => m !== undefined);
  if (missing.length > 0) {
    throw new VolleyError('EMIRRORSECRET', `${file} has no ${missing.join(' and ')}: the fetched secret and CA have nowhere to go (a pair on AWS checks its peer against the mirror CA)`);
  }
  return { secretFile: config.secretFile as string, caFile: config.peerCa as string, certFile: config.tls.cert, keyFile: config.tls.key, ip: config.listen.address };
}

/** `volley mirror-secret init`: adds the mirror CA to the secret, once. */
export function initMirrorSecret(client: SecretsManagerClient, secretId: string, label: string): Promise<{ changed: string[]; caFingerprint: string }> {
  return initDrainSecret(client, secretId, label, MIRROR_SECRET_KIND);
}

/** `volley mirror-secret fetch`: the files from the secret, or the ones on disk when AWS is unreachable. */
export function fetchMirrorFiles(client: SecretsManagerClient, secretId: string, files: DrainFiles, owner: FileOwner | undefined, warn: (message: string) => void): Promise<'written' | 'kept'> {
  return fetchDrainFiles(client, secretId, files, owner, warn, MIRROR_SECRET_KIND);
}
