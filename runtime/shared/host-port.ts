// "ADDR:PORT", "[IPv6]:PORT", ":PORT" or "PORT": the one reading of an
// address and port, for command-line flags (--listen, --admin) and config
// files (the proxy's listen, admin_listen) alike, so both accept and refuse
// the same text.
import { isIP } from 'node:net';
import { VolleyError } from './errors';

export interface HostPort {
  address: string;
  port: number;
}

// A bracketed IPv6 address, or anything without brackets or a colon (an IPv4 address or a host name).
const HOST_PORT = /^(?:(?:\[([^\]]+)\]|([^[\]:]*)):)?(\d{1,5})$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

/**
 * The address and port `value` names, the address defaulting when only a
 * port is given; undefined when it is not one. Refused rather than guessed:
 * an unbracketed IPv6 address (is `::1:25` port 25 of ::1, or an address?),
 * unbalanced brackets, a port over 65535, an address that is neither an IP
 * nor a host name.
 */
export function readHostPort(value: unknown, defaultAddress: string): HostPort | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined;
  const m = HOST_PORT.exec(String(value).trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  if (m[1] !== undefined) return isIP(m[1]) === 6 ? { address: m[1], port } : undefined;
  const address = m[2] || defaultAddress;
  if (isIP(address) === 0 && !HOST_NAME.test(address)) return undefined;
  return { address, port };
}

/** readHostPort for a command-line flag: bad text throws VolleyError EBADFLAG naming it. */
export function parseHostPort(value: string, defaultAddress = '127.0.0.1'): HostPort {
  const hp = readHostPort(value, defaultAddress);
  if (!hp) throw new VolleyError('EBADFLAG', `"${value}" is not [address:]port (an IPv6 address in brackets: [::1]:25)`);
  return hp;
}
