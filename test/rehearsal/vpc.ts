// The rehearsal's VPC: a network namespace per instance (each daemon binds its
// ports on every address, as on its own instance, so two MTAs cannot share
// one namespace), all joined by a bridge in a hub namespace that also holds
// "the internet" (the sink MX and the DNS server on TEST-NET-1 addresses).
// Every namespace routes everything on-link over the bridge, so the
// environment's own addresses (private IPs, ENI sending IPs) are used
// unchanged, and moving an ENI is moving its addresses between namespaces.
import { execFileSync } from 'node:child_process';
import { VolleyError } from '../../runtime/shared/errors';
import { createNetns, type Netns } from './netns';

function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new VolleyError('ENETNS', `ip ${args.join(' ')} failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`);
  }
}

export interface Vpc {
  /** The hub: the bridge, and the addresses of "the internet" (sink MX, DNS). */
  readonly hub: Netns;
  /** A new namespace plugged into the bridge with these addresses on its eth0. */
  join(addresses: readonly string[]): Netns;
  /** Adds / removes an address on a joined namespace's eth0 (an ENI's IPs arriving or leaving). */
  addAddress(ns: Netns, address: string): void;
  removeAddress(ns: Netns, address: string): void;
  close(): void;
}

export function createVpc(hubAddresses: readonly string[]): Vpc {
  const hub = createNetns();
  const joined: Netns[] = [];
  let links = 0;
  try {
    ip(['-n', hub.name, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', hub.name, 'link', 'set', 'br0', 'up']);
    for (const a of hubAddresses) ip(['-n', hub.name, 'address', 'add', `${a}/32`, 'dev', 'br0']);
    ip(['-n', hub.name, 'route', 'add', 'default', 'dev', 'br0']);
  } catch (err) {
    hub.close();
    throw err;
  }
  return {
    hub,
    join(addresses) {
      const ns = createNetns();
      joined.push(ns);
      const port = `p${++links}`;
      ip(['-n', hub.name, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      ip(['-n', hub.name, 'link', 'set', port, 'master', 'br0', 'up']);
      ip(['-n', ns.name, 'link', 'set', 'eth0', 'up']);
      for (const a of addresses) ip(['-n', ns.name, 'address', 'add', `${a}/32`, 'dev', 'eth0']);
      ip(['-n', ns.name, 'route', 'add', 'default', 'dev', 'eth0']);
      return ns;
    },
    addAddress: (ns, a) => ip(['-n', ns.name, 'address', 'add', `${a}/32`, 'dev', 'eth0']),
    removeAddress: (ns, a) => ip(['-n', ns.name, 'address', 'del', `${a}/32`, 'dev', 'eth0']),
    close() {
      // Deleting a namespace deletes its end of the veth pair, and so the pair.
      for (const ns of joined.splice(0).reverse()) ns.close();
      hub.close();
    },
  };
}
