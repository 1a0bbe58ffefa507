import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { VolleyError } from './errors';

// node:net's BlockList does CIDR matching natively; this wraps it with
// parsing that names the bad entry and folds IPv4-mapped IPv6 peers.

export class CidrList {
  private readonly list = new BlockList();
  readonly entries: readonly string[];

  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries) {
      const [addr, bitsText] = entry.split('/');
      const family = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
      if (!family) throw new VolleyError('EBADCIDR', `"${entry}" is not an IP address or CIDR`);
      const max = family === 'ipv4' ? 32 : 128;
      const bits = bitsText === undefined ? max : Number(bitsText);
      if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new VolleyError('EBADCIDR', `"${entry}" has a bad prefix length`);
      this.list.addSubnet(addr, bits, family);
    }
  }

  has(address: string | undefined): boolean {
    if (!address) return false;
    const plain = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
    const family = isIPv4(plain) ? 'ipv4' : isIPv6(plain) ? 'ipv6' : undefined;
    return family ? this.list.check(plain, family) : false;
  }
}
