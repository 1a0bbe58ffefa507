// The drain secret both ends share (drain.secret_file or VOLLEY_DRAIN_SECRET),
// and during a rotation the previous one. Read like the proxy secret (same
// rules: >= 32 bytes, trailing whitespace trimmed) so operators learn one way.
import type { DrainConfig } from '../../shared/config/drain';
import { DRAIN_SECRET_ENV } from '../../shared/config/drain';
import { VolleyError } from '../../shared/errors';
import { loadPreviousSecret, loadSecret } from '../../shared/proxy-protocol/handshake';

/** [current, previous?]: the source signs with the first; the destination accepts either. */
export function loadDrainSecrets(config: Pick<DrainConfig, 'secretFile' | 'previousSecretFile'>): Buffer[] {
  try {
    const current = loadSecret({ file: config.secretFile, env: DRAIN_SECRET_ENV });
    const previous = loadPreviousSecret({ file: config.previousSecretFile, secretFile: config.secretFile });
    return previous ? [current, previous] : [current];
  } catch (err) {
    // The shared reader speaks of "the proxy secret"; this one is the drain's.
    const message = (err as Error).message.replace(/proxy secret/g, 'drain secret').replace('set secret_file', 'set drain.secret_file');
    throw new VolleyError('ESECRET', message, { cause: err });
  }
}
