import { isIP } from 'node:net';

const LOCAL_ATOM = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\u0080-\uFFFF-]+$/;
const LABEL = /^(?!-)[A-Za-z0-9\u0080-\uFFFF-]{1,63}(?<!-)$/;

/**
 * RFC 5321 mailbox syntax, with SMTPUTF8 (non-ASCII) allowed. Strict enough to
 * refuse what no MX would take, loose enough for real senders' local parts.
 */
export function isValidMailbox(address: string): boolean {
  if (address.length > 254) return false;
  const at = address.lastIndexOf('@');
  if (at < 1 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64) return false;
  const localOk = local.startsWith('"') ? /^"([^"\\\r\n]|\\.)*"$/.test(local) : LOCAL_ATOM.test(local) && !local.startsWith('.') && !local.endsWith('.') && !local.includes('..');
  return localOk && isValidDomain(domain);
}

export function isValidDomain(domain: string): boolean {
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const lit = domain.slice(1, -1);
    return isIP(lit.replace(/^IPv6:/i, '')) !== 0;
  }
  const labels = domain.split('.');
  // Single-label domains (root@localhost, a static route to "intranet") are legal syntax.
  return domain.length <= 253 && labels.every((l) => LABEL.test(l));
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
