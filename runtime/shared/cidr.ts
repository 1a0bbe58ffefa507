import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { VolleyError } from './errors';

/**
 * A list of CIDRs checked on every connection and every RCPT. IPv4 ranges are
 * kept as integer pairs: node:net's BlockList builds a SocketAddress per
 * check, which showed up in intake profiles. IPv6 goes through BlockList.
 */
export class CidrList {
  readonly entries: readonly string[];
  private readonly v4: [number, number][] = [];
  private readonly v6 = new BlockList();
  private hasV6 = false;

  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries) {
      const [addr, bitsText] = entry.split('/');
      const family = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
      if (!family) throw new VolleyError('EBADCIDR', `"${entry}" is not an IP address or CIDR`);
      const max = family === 'ipv4' ? 32 : 128;
      const bits = bitsText === undefined ? max : Number(bitsText);
      if (!/^\d+$/.test(bitsText ?? '0') || bits < 0 || bits > max) throw new VolleyError('EBADCIDR', `"${entry}" has a bad prefix length`);
      if (family === 'ipv4') {
        const size = 2 ** (32 - bits);
        const start = Math.floor(ipv4ToInt(addr) / size) * size;
        this.v4.push([start, start + size - 1]);
      } else {
        this.v6.addSubnet(addr, bits, 'ipv6');
        this.hasV6 = true;
      }
    }
  }

  has(address: string | undefined): boolean {
    if (!address || this.entries.length === 0) return false;
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
    if (isIPv4(plain)) {
      const n = ipv4ToInt(plain);
      for (const [lo, hi] of this.v4) if (n >= lo && n <= hi) return true;
      return false;
    }
    return this.hasV6 && isIPv6(plain) && this.v6.check(plain, 'ipv6');
  }
}

function ipv4ToInt(ip: string): number {
  const p = ip.split('.');
  return ((Number(p[0]) * 256 + Number(p[1])) * 256 + Number(p[2])) * 256 + Number(p[3]);
}
