import { VolleyError } from '../../runtime/shared/errors';
import { parseHostPort } from '../../runtime/shared/host-port';

/** Repeatable "name=address:port" flags. */
export function collectNamed(value: string, previous: Record<string, { address: string; port: number }> = {}): Record<string, { address: string; port: number }> {
  const eq = value.indexOf('=');
  if (eq < 1) throw new VolleyError('EBADFLAG', `"${value}" is not name=[address:]port`);
  return { ...previous, [value.slice(0, eq)]: parseHostPort(value.slice(eq + 1), '0.0.0.0') };
}

export function adminUrl(admin: string | undefined): string {
  const a = parseHostPort(admin ?? process.env.VOLLEY_ADMIN ?? '127.0.0.1:8025');
  return `http://${a.address}:${a.port}`;
}
