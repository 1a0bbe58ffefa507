// The rehearsal's VPC: a network namespace per instance (each daemon binds its
// ports on every address, as on its own instance, so two MTAs cannot share
// one namespace), all joined by a bridge in a hub namespace that also holds
// "the internet" (the sink MX and the DNS server on TEST-NET-1 addresses).
// Every namespace routes everything on-link over the bridge, so the
// environment's own addresses (private IPs, ENI sending IPs) are used
// unchanged, and moving an ENI is moving its addresses between namespaces.
// The hub's own MAC never changes (a VPC's router does not either), and a
// move is seen at once by every namespace, as in a VPC (which answers ARP
// itself from where each ENI is attached, and an ENI keeps its MAC): the
// moved address's neighbour entries are flushed everywhere, so no peer keeps
// sending to the MAC of the instance that had it (for up to a minute, until
// its ARP cache entry went stale, with every TCP connect black-holed meanwhile).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { VolleyError } from '../../runtime/shared/errors';
import { createNetns, type Netns } from './netns';

function ip(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new VolleyError('ENETNS', `ip ${args.join(' ')} failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`);
  }
}

/** The hub bridge's MAC ("the VPC router"): locally administered, and the same for the whole run. */
export const HUB_MAC = '02:56:50:43:00:01';

export interface Vpc {
  /** The hub: the bridge, and the addresses of "the internet" (sink MX, DNS). */
  readonly hub: Netns;
  /** A new namespace plugged into the bridge with these addresses on its eth0. */
  join(addresses: readonly string[]): Netns;
  /** Adds / removes an address on a joined namespace's eth0 (an ENI's IPs arriving or leaving); every namespace forgets where the address was. */
  addAddress(ns: Netns, address: string): void;
  removeAddress(ns: Netns, address: string): void;
  close(): void;
}

export function createVpc(hubAddresses: readonly string[]): Vpc {
  const hub = createNetns();
  const joined: Netns[] = [];
  let links = 0;
  /** The VPC's view of an address changed: no namespace may keep the old holder's MAC for it. */
  const forget = (address: string): void => {
    // A terminated instance's namespace is gone already: nothing of it to flush.
    for (const ns of [hub, ...joined]) if (existsSync(`/run/netns/${ns.name}`)) ip(['-n', ns.name, 'neigh', 'flush', 'to', `${address}/32`]);
  };
  try {
    ip(['-n', hub.name, 'link', 'add', 'br0', 'type', 'bridge']);
    // A fixed MAC: left unset, a bridge takes the lowest MAC of its ports, so
    // each instance booted or terminated could change it, and every namespace
    // would keep sending to the hub's old MAC (DNS, the sink MX, the lb) until
    // its ARP entry went stale, up to a minute of lost packets.
    ip(['-n', hub.name, 'link', 'set', 'br0', 'address', HUB_MAC]);
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
    addAddress(ns, a) {
      ip(['-n', ns.name, 'address', 'add', `${a}/32`, 'dev', 'eth0']);
      forget(a);
    },
    removeAddress(ns, a) {
      ip(['-n', ns.name, 'address', 'del', `${a}/32`, 'dev', 'eth0']);
      forget(a);
    },
    close() {
      // Deleting a namespace deletes its end of the veth pair, and so the pair.
      for (const ns of joined.splice(0).reverse()) ns.close();
      hub.close();
    },
  };
}
