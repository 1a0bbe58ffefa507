import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { SAFE_ARG } from '../../shared/proxy-protocol/envelope';

// RFC 6531's UTF8-non-ascii, less what no MX should ever see: C1 controls,
// lone surrogates (JSON can carry them; UTF-8 cannot) and U+FFFD, which is
// what decoding put where the client sent bytes that were not UTF-8.
const NON_ASCII = '\\u00A0-\\uD7FF\\uE000-\\uFFFC\\uFFFE\\uFFFF\\u{10000}-\\u{10FFFF}';
const LOCAL_ATOM = new RegExp(`^[A-Za-z0-9!#$%&'*+/=?^_\`{|}~.${NON_ASCII}-]+$`, 'u');
// RFC 5321 4.1.2: qtextSMTP is printable ASCII but " and \, quoted-pairSMTP a
// backslash and a printable ASCII character: never a control character.
const QUOTED = new RegExp(`^"(?:[\\x20\\x21\\x23-\\x5b\\x5d-\\x7e${NON_ASCII}]|\\\\[\\x20-\\x7e])*"$`, 'u');
const LABEL = new RegExp(`^(?!-)[A-Za-z0-9${NON_ASCII}-]{1,63}(?<!-)$`, 'u');

/**
 * RFC 5321 mailbox syntax, with SMTPUTF8 (non-ASCII) allowed, and nothing the
 * proxy link refuses to carry (SAFE_ARG: it also refuses white space and
 * angle brackets, which RFC 5321 allows inside quotes): what this accepts can
 * always be handed to an MX. Strict enough to refuse what no MX would take,
 * loose enough for real senders' local parts.
 */
export function isValidMailbox(address: string): boolean {
  if (address.length > 254 || !SAFE_ARG.test(address)) return false;
  const at = address.lastIndexOf('@');
  if (at < 1 || at === address.length - 1) return false;
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length > 64) return false;
  const localOk = local.startsWith('"') ? QUOTED.test(local) : LOCAL_ATOM.test(local) && !local.startsWith('.') && !local.endsWith('.') && !local.includes('..');
  return localOk && isValidDomain(domain);
}

export function isValidDomain(domain: string): boolean {
  if (domain.startsWith('[') && domain.endsWith(']')) {
    const lit = domain.slice(1, -1);
    return isIP(lit.replace(/^IPv6:/i, '')) !== 0;
  }
  const labels = domain.split('.');
  // Single-label domains (root@localhost, a static route to "intranet") are legal syntax.
  if (domain.length > 253 || !labels.every((l) => LABEL.test(l))) return false;
  // Delivery looks a non-ASCII domain up by its A-label: one IDNA refuses could never be resolved.
  return /^[\x00-\x7f]*$/.test(domain) || domainToASCII(domain) !== '';
}

export function domainOf(address: string): string {
  return address.slice(address.lastIndexOf('@') + 1).toLowerCase();
}
