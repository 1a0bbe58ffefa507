// The files a worker reads when it starts, checked by the primary before any
// worker gets the config: at the node's start and before a refresh is
// accepted. A worker that cannot load one dies at once and the primary starts
// it again every half second, for good: the node never becomes ready, or,
// after a refresh, the next restart of any worker (a crash, a stray SIGTERM)
// strands its partitions. A refused start or refresh names the field and file.
import { readFileSync } from 'node:fs';
import type { VolleyConfig } from '../shared/config/types';
import { VolleyError, errorCode } from '../shared/errors';
import { loadSecret } from '../shared/proxy-protocol/handshake';
import { mxTrust } from '../shared/smtp/mx-trust';
import { loadTls } from '../shared/tls-files';
import { DkimSigner } from './delivery/dkim/dkim';
import { verpFromConfig } from './delivery/records/verp';

/** Throws (a VolleyError naming the field) when a worker could not start on `config`. */
export async function checkWorkerInputs(config: VolleyConfig, persistentPath: string): Promise<void> {
  // At the first start this also makes the self-signed pair, once, for every worker to read.
  await field('smtp.tls', () => loadTls(config.smtp.tls, persistentPath, config.hostname));
  new DkimSigner(config.dkim); // names the key that cannot load
  if (config.delivery.tlsCaFile) mxTrust(config.delivery.tlsCaFile, 'delivery.tls_ca_file');
  verpFromConfig(config.inbound); // a VERP key (inbound.verp.secret_file) that is missing or short
  const proxies = config.proxies;
  // Read by every worker's proxy connector and throttle authority (the same environment as here).
  if (proxies && proxies.servers.length > 0) {
    await field('proxies.secret_file', () => loadSecret({ file: proxies.secretFile, env: 'VOLLEY_PROXY_SECRET' }));
    for (const [i, s] of proxies.servers.entries()) if (s.caFile) await field(`proxies.servers[${i}].ca_file`, () => readFileSync(s.caFile!));
  }
}

/** Runs `load`, prefixing the field's name to what it throws. */
async function field(name: string, load: () => unknown): Promise<void> {
  try {
    await load();
  } catch (err) {
    throw new VolleyError(errorCode(err) ?? 'EINPUT', `${name}: ${(err as Error).message}`, { cause: err });
  }
}
