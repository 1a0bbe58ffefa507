// `npm run rehearsal`, the HA pair check: the rehearsal environment with its
// MTA slots as pairs (mta.ha), synthesised and booted from what `cdk deploy`
// ships for them (user data, install.sh and its sudoers rule, the mirror's
// unit and config, the mirror secret, the arbiter lease in the events
// bucket). Only what the check needs is booted: one pair and the proxies
// (the rehearsal config's pool spans both).
// The runbook (README "MTA slots as HA pairs"): both nodes come up
// secondaries, node "a" is promoted by hand (`volley mirror promote --force`
// in a session on it) and its mirror's promote_command starts the MTA
// through sudo; mail sent to a is replicated to b; a's instance is lost (every
// process SIGKILLed, as with a host or AZ failure); b takes the expired
// arbiter lease in the fake S3 (conditional PUTs), its promote_command starts
// its MTA, and b delivers the mail a had acknowledged. The pair runs mode
// sync (the MTA config's `mirror: { mode: sync }`): alone, b refuses new mail
// (sync_policy block) until a's slot is replaced; the new instance comes back
// as b's secondary and b takes new mail again.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { arbiterKey, eventsBucketName } from '../../stacks/event-shipping';
import { waitUntil } from '../helpers/proxy-fixtures';
import { haEnvironment } from '../stacks/helpers';
import { pairMember } from './assembly';
import { HELD_MX_IP, type Booted, type Rehearsal, startRehearsal } from './rehearsal';

const MIRROR_UNIT = 'volley-mirror.service';
const MTA_UNIT = 'volley-mta.service';

let rehearsal: Rehearsal;
const booted: Booted[] = [];
beforeAll(async () => {
  // Mode sync: the mirror configs say it, and the one MTA config gives every MTA `mirror: { mode: sync }` (stacks/topology.ts).
  rehearsal = await startRehearsal({ env: haEnvironment('rehearsal', { mirrorMode: 'sync' }) });
}, 120_000);
afterAll(async () => {
  await Promise.all(probes.splice(0).map((p) => p.stop()));
  await rehearsal?.close();
});

function state(instances: readonly Booted[]): string {
  return [
    `signals ${JSON.stringify(rehearsal.aws.cloudFormation.signals)}`,
    ...instances.flatMap((i) => [
      `== ${i.name} (user data ${i.userData.code}: ${i.userData.stderr.slice(-500)})`,
      ...['volley-bootstrap.service', MIRROR_UNIT, MTA_UNIT, 'volley-proxy.service'].map((u) => `-- ${u}: ${i.runner.status(u).state}\n${i.runner.journal(u).slice(-1500)}`),
    ]),
  ].join('\n');
}

type MirrorStatus = { role?: string; epoch?: number; caught_up?: boolean; peer_connected?: boolean; durable_through?: string; sync?: { sync_state?: string }; promote_command?: { epoch: number; exit?: number | null; error?: string } };

/**
 * What a node says now, read inside it every 250 ms (its mirror's /status, as
 * `volley mirror status` reads it, and its MTA's /readyz): waitUntil's checks
 * are synchronous, and each read is a process in the instance's namespaces.
 */
interface Probe {
  mirror: MirrorStatus;
  mtaReady: boolean;
  stop(): Promise<void>;
}
const probes: Probe[] = [];
function probe(node: Booted): Probe {
  let stopped = false;
  const p: Probe = { mirror: {}, mtaReady: false, stop: async () => void (stopped = true) };
  const loop = (async () => {
    while (!stopped) {
      const status = await node.exec(['curl', '-s', '--max-time', '2', 'http://127.0.0.1:7628/status']);
      try {
        p.mirror = JSON.parse(status.stdout) as MirrorStatus;
      } catch {
        p.mirror = {};
      }
      p.mtaReady = (await node.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', 'http://127.0.0.1:8025/readyz'])).stdout === '200';
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  p.stop = async () => {
    stopped = true;
    await loop;
  };
  probes.push(p);
  return p;
}
const pairOf = () => {
  const first = rehearsal.assembly.instances.find((s) => s.role === 'mta' && pairMember(rehearsal.assembly.env, s.slot)?.member === 'a');
  const member = first && pairMember(rehearsal.assembly.env, first.slot);
  if (!first || !member) throw new Error('the ha rehearsal environment has no pair node "a"');
  const second = rehearsal.assembly.instances.find((s) => s.slot === member.pair.b.memberId);
  if (!second) throw new Error(`no launch template for ${member.pair.b.memberId}`);
  return { pair: member.pair, a: first, b: second };
};

let a: Booted;
let b: Booted;
let aNow: Probe;
let bNow: Probe;

it('boots one pair and the proxies: both nodes come up secondaries with their mirror interface, secret and certificate; no MTA runs', async () => {
  const { pair, a: aSpec, b: bSpec } = pairOf();
  // The proxies first, as in the fleet check: the MTA must reach them to deliver. (The rehearsal config's pool spans both.)
  for (const spec of rehearsal.assembly.instances.filter((s) => s.role === 'proxy')) booted.push(await rehearsal.boot(spec));
  a = await rehearsal.boot(aSpec);
  b = await rehearsal.boot(bSpec);
  booted.push(a, b);
  aNow = probe(a);
  bNow = probe(b);
  for (const i of booted) expect({ name: i.name, userData: i.userData.code }).toEqual({ name: i.name, userData: 0 });
  await waitUntil(() => rehearsal.aws.cloudFormation.signals.length === booted.length, 150_000, () => state(booted));
  if (rehearsal.aws.cloudFormation.signals.some((s) => s.status !== 'SUCCESS')) throw new Error(`a bootstrap signalled failure:\n${state(booted)}`);

  const mirrorSecret = JSON.parse(rehearsal.aws.secretsManager.secrets.get('volley/rehearsal/mirror')?.value ?? '{}') as { secret?: string; ca_cert?: string };
  for (const [node, member] of [[a, pair.a], [b, pair.b]] as const) {
    // A secondary: its mirror runs, the MTA does not (a node is never promoted implicitly).
    expect({ node: node.name, mirror: node.runner.status(MIRROR_UNIT).state, mta: node.runner.status(MTA_UNIT).state }).toEqual({ node: node.name, mirror: 'active', mta: 'inactive' });
    const now = node === a ? aNow : bNow;
    await waitUntil(() => now.mirror.role !== undefined, 30_000);
    expect({ node: node.name, role: now.mirror.role }).toEqual({ node: node.name, role: 'secondary' });
    // Its mirror interface's fixed IP arrived on the instance; the secret and a certificate for that IP from the mirror CA were fetched.
    expect((await node.exec(['ip', '-4', '-o', 'address', 'show'])).stdout).toContain(`inet ${member.mirrorIp}/32`);
    const cert = new X509Certificate(readFileSync(node.hostPath('/etc/volley/mirror.crt')));
    expect({ node: node.name, secret: readFileSync(node.hostPath('/etc/volley/mirror.secret'), 'utf8'), certFor: cert.checkIP(member.mirrorIp), byMirrorCa: cert.verify(new X509Certificate(mirrorSecret.ca_cert ?? '').publicKey) }).toEqual({
      node: node.name,
      secret: mirrorSecret.secret,
      certFor: member.mirrorIp,
      byMirrorCa: true,
    });
    // install.sh's sudoers rule for the promote_command, checked by visudo.
    expect(readFileSync(node.hostPath('/etc/sudoers.d/volley-mirror'), 'utf8')).toContain('NOPASSWD: /usr/bin/systemctl start --no-block volley-mta.service');
  }
}, 300_000);

const heldDelivered = () => rehearsal.world.sessions().filter((s) => s.local === HELD_MX_IP).reduce((n, s) => n + s.messages, 0);

it('the runbook\'s first promotion of "a" starts its MTA through sudo and takes the arbiter lease; mail it acknowledges reaches b', async () => {
  const { pair } = pairOf();
  const promoted = await a.exec(['volley', 'mirror', 'promote', '--force']);
  expect({ code: promoted.code, stderr: promoted.stderr }).toEqual({ code: 0, stderr: '' });
  // promote_command: sudo -n systemctl start --no-block volley-mta.service, allowed by install.sh's rule.
  await waitUntil(() => aNow.mtaReady, 60_000, () => state([a]));
  const leaseAt = [eventsBucketName(rehearsal.assembly.env), arbiterKey('rehearsal', pair.slotId)] as const;
  const lease = () => JSON.parse(rehearsal.aws.s3.get(...leaseAt)?.toString('utf8') ?? '{}') as { holder?: string; epoch?: number };
  expect(lease()).toMatchObject({ holder: pair.a.memberId });
  expect(rehearsal.aws.s3.denied).toEqual([]);
  expect(aNow.mirror).toMatchObject({ role: 'primary', epoch: 1, promote_command: { epoch: 1, exit: 0 } });

  // The MTA runs the generated config's mirror section: each 250 only once b holds the message.
  expect(parseDocument(readFileSync(a.hostPath('/etc/volley/volley.yaml'), 'utf8')).toJS().mirror).toEqual({ mode: 'sync' });
  await waitUntil(() => aNow.mirror.peer_connected === true && aNow.mirror.caught_up === true, 30_000, () => JSON.stringify(aNow.mirror));
  // Queued on a: held.rehearsal.test's MX is down, so the mail stays in a's spool, held by b too before each 250.
  expect(await rehearsal.world.send(a.privateIp, 'someone@held.rehearsal.test', 10, 2)).toBe(10);
  expect(heldDelivered()).toBe(0);
  expect(aNow.mirror.sync?.sync_state).toBe('sync');
}, 120_000);

it('a\'s instance lost: b takes the expired lease, its promote_command starts its MTA, and b delivers what a acknowledged; alone, b takes no new mail (sync_policy block)', async () => {
  const { pair } = pairOf();
  const lostAt = Date.now();
  await aNow.stop();
  await rehearsal.terminate(a, { crash: true });
  booted.splice(booted.indexOf(a), 1);
  await waitUntil(() => bNow.mirror.role === 'primary' && bNow.mtaReady, 60_000, () => `${JSON.stringify(bNow.mirror)}\n${state([b])}`);
  process.stdout.write(`rehearsal: pair ${pair.slotId}: b serving ${Date.now() - lostAt} ms after a's instance was lost (lease_ttl 10 s)\n`);
  const leaseAt = [eventsBucketName(rehearsal.assembly.env), arbiterKey('rehearsal', pair.slotId)] as const;
  expect(JSON.parse(rehearsal.aws.s3.get(...leaseAt)?.toString('utf8') ?? '{}')).toMatchObject({ holder: pair.b.memberId, epoch: 2 });
  expect(bNow.mirror).toMatchObject({ epoch: 2, promote_command: { epoch: 2, exit: 0 } });

  // What a acknowledged, delivered from b's copy of the spool (a is gone).
  await rehearsal.world.openHeldMx();
  await waitUntil(() => heldDelivered() >= 10, 60_000, () => `${heldDelivered()} delivered\n${b.runner.journal(MTA_UNIT).slice(-2000)}`);
  expect(heldDelivered()).toBe(10);
  // With no secondary, a barrier cannot be answered: the message is refused (451), never acknowledged by b alone.
  expect(await rehearsal.world.send(b.privateIp, 'while-alone@inbox.rehearsal.test', 1)).toBe(0);
}, 120_000);

it('a\'s slot replaced (its group starts a new instance): it finds a\'s volume and mirror interface, comes back as b\'s secondary (the lease is b\'s, epoch 2) without starting its MTA, and catches up', async () => {
  const { a: aSpec } = pairOf();
  const fresh = await rehearsal.boot(aSpec);
  booted.push(fresh);
  const freshNow = probe(fresh);
  await waitUntil(() => rehearsal.aws.cloudFormation.signals.some((s) => s.uniqueId === fresh.instanceId), 150_000, () => state([fresh]));
  expect(rehearsal.aws.cloudFormation.signals.find((s) => s.uniqueId === fresh.instanceId)?.status).toBe('SUCCESS');
  // a's durable state said primary (epoch 1): the lease of epoch 2 demoted it before the bootstrap asked, so no MTA started here.
  expect(fresh.runner.journal('volley-bootstrap.service')).not.toContain('making an ext4 filesystem');
  expect(fresh.runner.journal('volley-bootstrap.service')).toContain('the mirror says this node is the secondary');
  expect(fresh.runner.status(MTA_UNIT).state).toBe('inactive');
  await waitUntil(() => freshNow.mirror.role === 'secondary' && freshNow.mirror.epoch === 2 && bNow.mirror.caught_up === true, 60_000, () => `${JSON.stringify(bNow.mirror)}\n${JSON.stringify(freshNow.mirror)}`);
  expect(fresh.runner.status(MTA_UNIT).state).toBe('inactive');
  // A secondary again: b takes new mail (each held by the new a first) and delivers it.
  const before = rehearsal.world.delivered();
  expect(await rehearsal.world.send(b.privateIp, 'after-failover@inbox.rehearsal.test', 5, 2)).toBe(5);
  await waitUntil(() => rehearsal.world.delivered() === before + 5, 60_000, () => state([b]));
}, 240_000);
