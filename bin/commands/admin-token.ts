// The admin token the CLI sends to an MTA's admin port (`volley queue`,
// `volley config refresh`): from --token-file, else VOLLEY_ADMIN_TOKEN. The
// admin API refuses the queue and config calls without one (401).
import { readFileSync } from 'node:fs';
import { VolleyError } from '../../runtime/shared/errors';

/** The Authorization header for the admin API; none when no token is given (the MTA then answers 401, saying why). */
export function adminHeaders(tokenFile: string | undefined): Record<string, string> {
  let token = process.env.VOLLEY_ADMIN_TOKEN;
  if (tokenFile !== undefined) {
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new VolleyError('ETOKENFILE', `cannot read the admin token file ${tokenFile}: ${(err as Error).message}`, { cause: err });
    }
    if (!token) throw new VolleyError('ETOKENFILE', `the admin token file ${tokenFile} is empty`);
  }
  return token ? { authorization: `Bearer ${token}` } : {};
}
