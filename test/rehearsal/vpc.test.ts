// The rehearsal's VPC: what peers learnt by ARP stays true, as in a VPC. The
// hub's MAC (DNS, the sink MX, the lb behind it) does not change when
// instances join or leave, and an address moved to another namespace (an ENI
// attached to a replacement instance) is reached there at once by a peer that
// talked to the old holder, instead of after the peer's ARP entry went stale.
import { execFileSync } from 'node:child_process';
import { createVpc, HUB_MAC, type Vpc } from './vpc';

let vpc: Vpc;
beforeAll(() => {
  vpc = createVpc(['198.51.100.1']);
});
afterAll(() => vpc.close());

/** The MAC of a namespace's eth0 (or another of its links). */
function mac(ns: { name: string }, link = 'eth0'): string {
  const out = execFileSync('ip', ['-n', ns.name, '-o', 'link', 'show', link], { encoding: 'utf8' });
  const m = /link\/ether (\S+)/.exec(out);
  if (!m) throw new Error(`no MAC in: ${out}`);
  return m[1] as string;
}

/** The MAC a namespace's neighbour table holds for an address ('' when it holds none). */
function neighbour(ns: { name: string }, address: string): string {
  const out = execFileSync('ip', ['-n', ns.name, 'neigh', 'show', 'to', address], { encoding: 'utf8' });
  return /lladdr (\S+)/.exec(out)?.[1] ?? '';
}

// A TCP connect to a port nothing listens on: answered by a reset, after ARP resolved the address.
const TOUCH = (address: string): string =>
  `require('node:net').connect(7, ${JSON.stringify(address)}).on('error', (e) => { console.log(e.code); process.exit(0); }).on('connect', () => process.exit(0));`;

it('moving an address to a new namespace leaves no peer with the old holder\'s MAC for it', async () => {
  const moved = '10.98.0.20';
  const old = vpc.join(['10.98.0.11']);
  vpc.addAddress(old, moved);
  const peer = vpc.join(['10.98.0.12']);
  const before = await peer.exec([process.execPath, '-e', TOUCH(moved)]);
  expect(before.stdout.trim()).toBe('ECONNREFUSED');
  const oldMac = mac(old);
  expect(neighbour(peer, moved)).toBe(oldMac);

  // The old instance terminated (its namespace gone), the ENI attached to the replacement.
  old.close();
  const fresh = vpc.join(['10.98.0.13']);
  vpc.addAddress(fresh, moved);
  expect(neighbour(peer, moved)).not.toBe(oldMac);
  expect(neighbour(vpc.hub, moved)).not.toBe(oldMac);
  const after = await peer.exec([process.execPath, '-e', TOUCH(moved)]);
  expect(after.stdout.trim()).toBe('ECONNREFUSED');
  expect(neighbour(peer, moved)).toBe(mac(fresh));
});

it('the hub keeps its MAC when instances join and leave, so a peer\'s ARP entry for DNS or the sink MX stays right', async () => {
  const hubIp = '198.51.100.1';
  const peer = vpc.join(['10.98.0.31']);
  const touched = await peer.exec([process.execPath, '-e', TOUCH(hubIp)]);
  expect(touched.stdout.trim()).toBe('ECONNREFUSED');
  const learnt = neighbour(peer, hubIp);
  expect(learnt).toBe(mac(vpc.hub, 'br0'));

  // An instance joins whose bridge port has the lowest MAC there can be (an
  // unset bridge MAC would become it), and another leaves.
  const low = vpc.join(['10.98.0.32']);
  const ports = execFileSync('ip', ['-n', vpc.hub.name, '-o', 'link', 'show', 'master', 'br0'], { encoding: 'utf8' }).trim().split('\n');
  const lowPort = /^\d+: ([^@:]+)/.exec(ports[ports.length - 1] as string)?.[1];
  if (!lowPort) throw new Error(`no bridge port in: ${ports.join('\n')}`);
  execFileSync('ip', ['-n', vpc.hub.name, 'link', 'set', lowPort, 'address', '02:00:00:00:00:01']);
  const leaving = vpc.join(['10.98.0.33']);
  leaving.close();
  // What the peer learnt still reaches the hub.
  expect(mac(vpc.hub, 'br0')).toBe(learnt);
  low.close();
  expect(mac(vpc.hub, 'br0')).toBe(learnt);
  expect(learnt).toBe(HUB_MAC);
});
