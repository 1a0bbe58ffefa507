// `npm run rehearsal` (not part of `npm test`: about 40 s on a 2-core
// machine, most of it booting instances).
// The rehearsal fleet booted from what `cdk deploy` ships, each instance from
// its own launch template's user data (runtime zip from the fake S3,
// install.sh, config sync from the fake SSM/S3, `systemctl start --no-block
// volley-bootstrap`): an MTA slot finds its volume by tag, attaches it (a loop
// device), formats and mounts it inside its own mount namespace, starts
// volley-mta.service (proxy-link files from the fake Secrets Manager first);
// a proxy slot attaches its sending ENI (its addresses arrive on its
// namespace) and starts volley-proxy.service; each waits for /readyz and
// signals SUCCESS to the fake CloudFormation.
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Webhook } from 'standardwebhooks';
import { parseDocument } from 'yaml';
import { eventsBucketName } from '../../stacks/event-shipping';
import { dkimVerify } from '../helpers/dkim-verify';
import { waitUntil } from '../helpers/proxy-fixtures';
import type { Instance } from './instance';
import { REPO_ROOT } from './assembly';
import { DKIM_KEY_FILE, DKIM_SELECTOR, HELD_MX_IP, INGRESS_IP, type Rehearsal, SENDER_DOMAIN, SINK_MX_IP, startRehearsal, THROTTLED_MX_IP, WEBHOOK_SECRET_FILE } from './rehearsal';
import type { SinkSession, WebhookRequest } from './world';

let rehearsal: Rehearsal;
const booted: Booted[] = [];
const replacements: Booted[] = [];
beforeAll(async () => {
  rehearsal = await startRehearsal();
}, 120_000);
afterAll(() => rehearsal?.close());

type Booted = Awaited<ReturnType<Rehearsal['boot']>>;

function state(instances: readonly (Instance & { instanceId: string })[]): string {
  const units = ['volley-bootstrap.service', 'volley-mta.service', 'volley-proxy.service'];
  return [
    `signals ${JSON.stringify(rehearsal.aws.cloudFormation.signals)}`,
    ...instances.flatMap((i) => [`== ${i.name} (user data ${i.userData.code}: ${i.userData.stderr.slice(-500)})`, ...units.map((u) => `-- ${u}: ${i.runner.status(u).state}\n${i.runner.journal(u).slice(-1500)}`)]),
  ].join('\n');
}

it('boots both MTA slots and both proxies to /readyz and a SUCCESS signal each; volumes and sending IPs land on their own instance only', async () => {
  // Proxies first, as the Proxy stack deploys after the Mta stack but the MTAs must reach them to deliver.
  for (const spec of [...rehearsal.assembly.instances].sort((a, b) => (a.role === b.role ? a.slot.localeCompare(b.slot) : a.role === 'proxy' ? -1 : 1))) {
    booted.push(await rehearsal.boot(spec));
  }
  for (const i of booted) expect({ name: i.name, userData: i.userData.code }).toEqual({ name: i.name, userData: 0 });
  await waitUntil(() => rehearsal.aws.cloudFormation.signals.length === booted.length, 150_000, () => state(booted));
  const signals = rehearsal.aws.cloudFormation.signals;
  if (signals.some((s) => s.status !== 'SUCCESS')) throw new Error(`a bootstrap signalled failure:\n${state(booted)}`);
  expect(signals.map((s) => s.uniqueId).sort()).toEqual(booted.map((i) => i.instanceId).sort());

  for (const i of booted) {
    if (i.spec.role === 'mta') {
      expect(i.runner.status('volley-mta.service').state).toBe('active');
      expect((await i.exec(['mountpoint', '-q', '/var/lib/volley'])).code).toBe(0);
      const ready = await i.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8025/readyz']);
      expect(ready.stdout).toBe('200');
      // The drain secret and a certificate for the instance's private IP from the drain CA, fetched before the MTA started,
      // where the generated config's drain section points.
      const drain = JSON.parse(rehearsal.aws.secretsManager.secrets.get('volley/rehearsal/drain')?.value ?? '{}') as { secret?: string; ca_cert?: string };
      const cert = new X509Certificate(readFileSync(i.hostPath('/etc/volley/drain.crt')));
      expect({
        node: i.name,
        drainSecret: readFileSync(i.hostPath('/etc/volley/drain.secret'), 'utf8'),
        certFor: cert.checkIP(i.privateIp),
        issuedByDrainCa: cert.verify(new X509Certificate(drain.ca_cert ?? '').publicKey),
      }).toEqual({ node: i.name, drainSecret: drain.secret, certFor: i.privateIp, issuedByDrainCa: true });
    } else {
      expect(i.runner.status('volley-proxy.service').state).toBe('active');
      const eni = rehearsal.assembly.interfaces.find((e) => e.slot === i.spec.slot);
      expect(i.netns.addresses().length).toBeGreaterThanOrEqual(0);
      const own = (await i.exec(['ip', '-4', '-o', 'address', 'show', 'dev', 'eth0'])).stdout;
      for (const ip of eni?.privateIpAddresses ?? ['missing']) expect(own).toContain(`inet ${ip}/32`);
    }
  }
  // The host never mounted a volume.
  expect((await rehearsal.vpc.hub.exec(['mountpoint', '-q', '/var/lib/volley'])).code).not.toBe(0);
}, 300_000);

/** The most sessions from one source address open at once, among these. */
function maxOverlapPerSource(sessions: readonly SinkSession[]): number {
  let max = 0;
  for (const remote of new Set(sessions.map((s) => s.remote))) {
    const mine = sessions.filter((s) => s.remote === remote);
    for (const s of mine) max = Math.max(max, mine.filter((o) => o.openedAt <= s.openedAt && (o.closedAt ?? Infinity) > s.openedAt).length);
  }
  return max;
}

it('mail injected at the ingress reaches the sink MX from the configured sending IPs, through the proxies, the throttle holding across both MTAs', async () => {
  const mtas = booted.filter((i) => i.spec.role === 'mta');
  expect(mtas).toHaveLength(2);
  await rehearsal.world.startLb(INGRESS_IP, mtas.map((m) => m.privateIp));
  const sendingIps = rehearsal.assembly.env.proxy.proxies.flatMap((p) => p.sendingIps);
  const started = Date.now();
  // A burst at once to each domain, so that without the throttle the MTAs would open several sessions per sending IP.
  const [inbox, throttledSent] = await Promise.all([
    rehearsal.world.send(INGRESS_IP, 'someone@inbox.rehearsal.test', 20, 4),
    rehearsal.world.send(INGRESS_IP, 'someone@throttled.rehearsal.test', 20, 4),
  ]);
  expect({ inbox, throttledSent }).toEqual({ inbox: 20, throttledSent: 20 });
  await waitUntil(() => rehearsal.world.delivered() === 40, 120_000, () => JSON.stringify(rehearsal.world.sessions()));
  const ms = Date.now() - started;
  process.stdout.write(`rehearsal: 40 messages injected at the ingress and delivered in ${ms} ms: ${(40 / (ms / 1000)).toFixed(1)} messages/s\n`);
  const sessions = rehearsal.world.sessions().filter((s) => s.messages > 0);
  // Only from sending IPs the config names: every delivery went through a proxy.
  for (const s of sessions) expect(sendingIps).toContain(s.remote);
  const throttled = sessions.filter((s) => s.local === THROTTLED_MX_IP);
  expect(throttled.flatMap((s) => s.recipients).every((r) => r.endsWith('@throttled.rehearsal.test'))).toBe(true);
  expect(throttled.reduce((n, s) => n + s.messages, 0)).toBe(20);
  expect(maxOverlapPerSource(throttled)).toBe(1);
  // Delivery TLS as deployed: the inbox MX offers STARTTLS and got every message encrypted; the throttled MX does
  // not, and got its mail in clear (the default policy is opportunistic, RFC 7435), never refused for it.
  const byMx = (ip: string) => sessions.filter((s) => s.local === ip).reduce((n, s) => ({ messages: n.messages + s.messages, secure: n.secure + s.secureMessages }), { messages: 0, secure: 0 });
  expect({ inbox: byMx(SINK_MX_IP), throttled: byMx(THROTTLED_MX_IP) }).toEqual({ inbox: { messages: 20, secure: 20 }, throttled: { messages: 20, secure: 0 } });
}, 240_000);

it('the mail carries a DKIM-Signature by the operator\'s key, which reached each MTA from its Secrets Manager secret and verifies', async () => {
  const mtas = booted.filter((i) => i.spec.role === 'mta');
  for (const m of mtas) {
    // Written by `volley secret-files fetch` (ExecStartPre) root-owned 0640, read by the daemon's group.
    const key = statSync(m.hostPath(DKIM_KEY_FILE));
    const volley = Number((await m.exec(['id', '-g', 'volley'])).stdout.trim());
    expect({ node: m.name, mode: key.mode & 0o777, uid: key.uid, gid: key.gid }).toEqual({ node: m.name, mode: 0o640, uid: 0, gid: volley });
  }
  // Read with each MTA role's own credentials, which the fake Secrets Manager holds to its statements: the
  // OperatorFileSecrets grant is what let them. A proxy's role has none: its read of the same secret is refused.
  expect(rehearsal.aws.secretsManager.denied).toEqual([]);
  const fileSecret = rehearsal.assembly.env.mta.fileSecrets?.[0] as string;
  const proxy = booted.find((i) => i.spec.role === 'proxy') as Booted;
  const refused = await proxy.exec(['/opt/volley/bin/volley', 'secret-files', 'fetch', '--secret-id', fileSecret, '--region', rehearsal.assembly.env.region, '--dir', '/run/volley-rehearsal-proxy-files', '--user', 'root']);
  expect({ failed: refused.code !== 0, denied: refused.stderr.includes(`cannot read secret ${fileSecret}: `) && refused.stderr.includes('is not authorized to perform: secretsmanager:GetSecretValue') }).toEqual({ failed: true, denied: true });
  expect(rehearsal.aws.secretsManager.denied).toEqual([expect.stringMatching(new RegExp(`secretsmanager:GetSecretValue arn:aws:secretsmanager:[^ ]+:secret:${fileSecret}-AbCdEf$`))]);
  const files = rehearsal.world.sessions().flatMap((s) => s.files);
  expect(files.length).toBeGreaterThanOrEqual(40);
  const out = await dkimVerify(rehearsal.dir, files.map((f) => readFileSync(f)), rehearsal.dkimRecords);
  // Every message, whichever MTA signed it: one signature, for the sender's domain and the operator's selector, valid.
  const summary = out.results.map((r) => r.signatures.map((sig) => ({ ok: sig.ok, d: sig.d, s: sig.s, a: sig.a, error: sig.error })));
  expect(new Set(summary.map((r) => JSON.stringify(r)))).toEqual(new Set([JSON.stringify([{ ok: true, d: SENDER_DOMAIN, s: DKIM_SELECTOR, a: 'rsa-sha256', error: null }])]));
}, 120_000);

/** One event line of a shipped file, with where it was found. */
interface ShippedEvent {
  readonly key: string;
  readonly event: string;
  readonly status?: string;
  readonly message_id?: string;
  readonly recipient?: string;
  readonly node?: string;
  readonly tls_policy?: string;
  readonly tls_version?: string;
  readonly matched_by?: string;
}

/** Every event line of the closed event-log files in the events bucket (the fake S3). */
function shippedEvents(bucket: string): ShippedEvent[] {
  return [...rehearsal.aws.s3.objects.entries()]
    .filter(([id]) => id.startsWith(`${bucket}/`))
    .flatMap(([id, o]) => {
      const key = id.slice(bucket.length + 1);
      const lines = gunzipSync(o.body).toString('utf8').split('\n').filter(Boolean);
      return lines.map((l) => ({ key, ...(JSON.parse(l) as Omit<ShippedEvent, 'key'>) }));
    });
}

it('the events of the delivered mail reach the events bucket: closed event-log files from each MTA, gzipped, under its own slot\'s prefix, written with its own role', async () => {
  const mtas = booted.filter((i) => i.spec.role === 'mta');
  const bucket = eventsBucketName(rehearsal.assembly.env);
  const shipped = (): ShippedEvent[] => shippedEvents(bucket);
  const delivered = (): ShippedEvent[] => shipped().filter((e) => e.event === 'delivery' && e.status === 'delivered');
  const journals = (): string => mtas.map((m) => `== ${m.name}\n${m.runner.journal('volley-mta.service').slice(-1500)}`).join('\n');
  // Files close 5 s after their first event (events.attempt_log.max_age) and are looked for every 2 s.
  await waitUntil(() => new Set(delivered().map((e) => e.message_id)).size === 40, 60_000, () => `${[...rehearsal.aws.s3.objects.keys()].filter((k) => k.startsWith(bucket)).join('\n')}\n${journals()}`);
  // Every message of the mail test once, each by its recipient's domain.
  const events = delivered();
  expect(events).toHaveLength(40);
  expect(events.filter((e) => e.recipient?.endsWith('@inbox.rehearsal.test'))).toHaveLength(20);
  expect(events.filter((e) => e.recipient?.endsWith('@throttled.rehearsal.test'))).toHaveLength(20);
  // Each says how it went: opportunistic TLS (policy may), encrypted to the MX that offered STARTTLS, in clear to the other.
  const tls = (domain: string) => [...new Set(events.filter((e) => e.recipient?.endsWith(domain)).map((e) => `${e.tls_policy} ${e.tls_version ?? 'clear'}`))];
  expect({ inbox: tls('@inbox.rehearsal.test'), throttled: tls('@throttled.rehearsal.test') }).toEqual({ inbox: [expect.stringMatching(/^may TLSv1\.[23]$/)], throttled: ['may clear'] });

  const keys = [...new Set(shipped().map((e) => e.key))];
  const slots = mtas.map((m) => m.spec.instanceEnv.VOLLEY_NODE_ID);
  for (const key of keys) {
    // mta/<env>/<node>/events/yyyy/mm/dd/<file>.gz, dated by the file's start (its name).
    const m = /^mta\/rehearsal\/([^/]+)\/events\/(\d{4})\/(\d{2})\/(\d{2})\/[A-Za-z0-9_-]+\.(\d{8})T\d{9}Z-\d{6}\.jsonl\.gz$/.exec(key);
    expect({ key, scheme: m !== null }).toEqual({ key, scheme: true });
    if (!m) continue;
    expect(slots).toContain(m[1]);
    expect(m[2] + m[3] + m[4]).toBe(m[5]);
    // A node ships its own events only.
    expect(shipped().filter((e) => e.key === key && e.node !== m[1])).toEqual([]);
  }
  // From each MTA, both having taken mail from the lb.
  for (const slot of slots) expect({ slot, files: keys.some((k) => k.startsWith(`mta/rehearsal/${slot}/`)) }).toEqual({ slot, files: true });
  // Each wrote with its own role's credentials, which the fake S3 holds to that role's statements: nothing refused.
  expect(rehearsal.aws.s3.denied).toEqual([]);
  // Shipped, then removed from the node (keep_local is off) once S3 confirmed it: the volume keeps no file S3 holds.
  // Read through the daemon's /proc root: the volume is mounted in the instance's own mount namespace only.
  for (const m of mtas) {
    const volume = `/proc/${m.runner.status('volley-mta.service').mainPid}/root/var/lib/volley`;
    const mine = keys.filter((k) => k.startsWith(`mta/rehearsal/${m.spec.instanceEnv.VOLLEY_NODE_ID}/`)).map((k) => k.split('/').at(-1)?.replace(/\.gz$/, ''));
    const kept = (): string[] => {
      const local = new Set((readdirSync(volume, { recursive: true }) as string[]).map((f) => f.split('/').at(-1)));
      return mine.filter((f): f is string => f !== undefined && local.has(f));
    };
    await waitUntil(() => kept().length === 0, 30_000, () => `${m.name} keeps ${kept().join(', ')}`);
  }
}, 120_000);

/** Whether the Standard Webhooks reference implementation accepts the request with this secret. */
function verifies(secret: string, r: WebhookRequest): boolean {
  try {
    new Webhook(secret).verify(r.body, r.headers);
    return true;
  } catch {
    return false;
  }
}

/** The delivered-mail events among these requests' batches. */
const deliveredEvents = (requests: readonly WebhookRequest[]): { recipient?: string }[] =>
  requests.flatMap((r) => JSON.parse(r.body) as { event?: string; status?: string; recipient?: string }[]).filter((e) => e.event === 'delivery' && e.status === 'delivered');

it('the delivery events reach the operator\'s webhook signed with the secret from its Secrets Manager secret; the webhook secret and the DKIM key rotated there sign from the next config-sync tick, without a restart', async () => {
  const world = rehearsal.world;
  await waitUntil(() => deliveredEvents(world.webhookRequests()).length >= 40, 60_000, () => `${world.webhookRequests().length} requests`);
  const before = world.webhookRequests();
  const first = rehearsal.webhookSecret;
  expect(new Set(before.map((r) => verifies(first, r)))).toEqual(new Set([true]));

  // The operator rotates both (put-secret-value); each MTA's next tick writes them and reloads the MTA in place.
  const rotated = `whsec_${randomBytes(32).toString('base64')}`;
  const dkim = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dkimRecords = { ...rehearsal.dkimRecords };
  dkimRecords[`${DKIM_SELECTOR}._domainkey.${SENDER_DOMAIN}`] = `v=DKIM1; k=rsa; p=${dkim.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
  rehearsal.putFiles({ [WEBHOOK_SECRET_FILE]: `${rotated}\n`, [DKIM_KEY_FILE]: dkim.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string });
  const mtas = booted.filter((i) => i.spec.role === 'mta');
  const refreshes = (m: Booted): number => (m.runner.journal('volley-mta.service').match(/config refreshed/g) ?? []).length;
  for (const m of mtas) {
    const pid = m.runner.status('volley-mta.service').mainPid;
    const refreshed = refreshes(m);
    await m.runner.trigger('volley-config-sync.timer');
    await waitUntil(() => m.runner.status('volley-config-sync.service').state === 'inactive', 30_000);
    expect(m.runner.journal('volley-config-sync.service')).toContain(`volley secret-files: wrote dkim/${SENDER_DOMAIN}.pem\nvolley secret-files: wrote webhook/hooks.secret\n`);
    await waitUntil(() => refreshes(m) > refreshed, 30_000, () => m.runner.journal('volley-mta.service').slice(-1500));
    expect(m.runner.status('volley-mta.service')).toMatchObject({ state: 'active', mainPid: pid });
  }
  expect(await world.send(INGRESS_IP, 'rotated@inbox.rehearsal.test', 4, 2)).toBe(4);
  await waitUntil(() => deliveredEvents(world.webhookRequests().slice(before.length)).filter((e) => e.recipient === 'rotated@inbox.rehearsal.test').length >= 4, 60_000);
  const after = world.webhookRequests().slice(before.length).filter((r) => deliveredEvents([r]).some((e) => e.recipient === 'rotated@inbox.rehearsal.test'));
  expect(after.map((r) => ({ rotated: verifies(rotated, r), first: verifies(first, r) }))).toEqual(after.map(() => ({ rotated: true, first: false })));
  // The mail itself: signed with the new key, which the new DNS record verifies and the old one does not.
  const mail = world.sessions().flatMap((x) => x.files).map((f) => readFileSync(f)).filter((m) => m.includes('rotated@inbox.rehearsal.test'));
  expect(mail).toHaveLength(4);
  const verdicts = async (records: Record<string, string>): Promise<boolean[]> => (await dkimVerify(rehearsal.dir, mail, records)).results.map((r) => r.verify);
  expect({ rotatedKey: await verdicts(dkimRecords), firstKey: await verdicts(rehearsal.dkimRecords) }).toEqual({ rotatedKey: [true, true, true, true], firstKey: [false, false, false, false] });
}, 180_000);

it('a DSN for a delivered message, sent as a receiver\'s MTA sends it to the inbound port the inbound NLB forwards to, is answered 250 and its bounce event reaches the events bucket, matched by the quoted X-Volley-Id', async () => {
  const inbound = rehearsal.assembly.env.mta.inbound;
  if (!inbound) throw new Error('the rehearsal environment declares no mta.inbound');
  const domain = inbound.domains[0] as string;
  const mtas = booted.filter((i) => i.spec.role === 'mta');
  const bucket = eventsBucketName(rehearsal.assembly.env);
  // A message of the mail test, as the events bucket has it: delivered to the inbox MX by one MTA.
  const original = shippedEvents(bucket).find((e) => e.event === 'delivery' && e.status === 'delivered' && e.recipient?.endsWith('@inbox.rehearsal.test'));
  if (!original?.message_id || !original.recipient) throw new Error('no delivered message in the events bucket');
  // Postfix's DSN (test/fixtures/reports), as the receiver would write it about this message: its quoted
  // headers carry this message's X-Volley-Id, its recipient groups this recipient, and it goes to the bounce
  // domain (no VERP here: the rehearsal's pool sends with the plain return path).
  const fixture = readFileSync(join(REPO_ROOT, 'test/fixtures/reports/postfix-dsn.eml'), 'latin1');
  const dsn = fixture
    .replaceAll('01M8RDABERFSBSJVJM2CRMGMXK', original.message_id)
    .replaceAll('no.such.user@example.net', original.recipient)
    .replace(/bounce\+[0-9a-z]+@bounces\.shop\.example/g, `bounces@${domain}`);
  expect(dsn).toContain(`X-Volley-Id: ${original.message_id}`);
  const file = join(rehearsal.dir, 'dsn.eml');
  writeFileSync(file, dsn, 'latin1');
  // The NLB may hand it to any MTA: the other one than the sender, so the match needs nothing of the sender's spool.
  const target = mtas.find((m) => m.spec.instanceEnv.VOLLEY_NODE_ID !== original.node) ?? mtas[0];
  if (!target) throw new Error('no MTA booted');
  const slot = target.spec.instanceEnv.VOLLEY_NODE_ID;
  const to = `bounces@${domain}`;

  const reply = await rehearsal.world.report(target.privateIp, inbound.port, to, file);
  expect(reply).toMatch(/^250 /);
  const bounces = (): ShippedEvent[] => shippedEvents(bucket).filter((e) => e.event === 'bounce' && e.message_id === original.message_id);
  await waitUntil(() => bounces().length > 0, 60_000, () => `${target.name}:\n${target.runner.journal('volley-mta.service').slice(-2000)}`);
  expect(bounces()).toEqual([
    expect.objectContaining({ event: 'bounce', status: 'failed', message_id: original.message_id, recipient: original.recipient, matched_by: 'header', node: slot }),
  ]);
  expect(bounces()[0]?.key.startsWith(`mta/rehearsal/${slot}/events/`)).toBe(true);
  expect(rehearsal.aws.s3.denied).toEqual([]);
  // The listener open to the internet takes mail for its own domains only: another recipient is refused, never relayed.
  await expect(rehearsal.world.report(target.privateIp, inbound.port, 'someone@inbox.rehearsal.test', file)).rejects.toThrow(/<\*\* +550 5\.7\.1 <someone@inbox\.rehearsal\.test>: relay access denied/);
}, 120_000);

it('a rolling replacement of an MTA slot: the new instance finds the volume by tag, attaches, mounts, and delivers the queue it held, losing nothing', async () => {
  const old = booted.find((i) => i.spec.role === 'mta');
  if (!old) throw new Error('no MTA booted');
  const heldDelivered = () => rehearsal.world.sessions().filter((s) => s.local === HELD_MX_IP).reduce((n, s) => n + s.messages, 0);
  // Queued on this slot's volume: each 250 means on disk; the held MX is down, so they wait for a retry.
  expect(await rehearsal.world.send(old.privateIp, 'someone@held.rehearsal.test', 10, 2)).toBe(10);
  expect(heldDelivered()).toBe(0);

  const stoppedAt = Date.now();
  await rehearsal.terminate(old);
  booted.splice(booted.indexOf(old), 1);
  const fresh = await rehearsal.boot(old.spec);
  replacements.push(fresh);
  expect(fresh.userData.code).toBe(0);
  const signalled = () => rehearsal.aws.cloudFormation.signals.find((s) => s.uniqueId === fresh.instanceId);
  await waitUntil(() => signalled() !== undefined, 150_000, () => state([fresh]));
  expect(signalled()?.status).toBe('SUCCESS');
  process.stdout.write(`rehearsal: MTA slot ${old.spec.slot} replaced in ${Date.now() - stoppedAt} ms from its unit's stop to the new instance's /readyz\n`);
  // The same volume, found by its tag and mounted again: no new filesystem.
  expect(fresh.runner.journal('volley-bootstrap.service')).not.toContain('making an ext4 filesystem');

  await rehearsal.world.openHeldMx();
  await waitUntil(() => heldDelivered() >= 10, 120_000, () => `${heldDelivered()} delivered\n${fresh.runner.journal('volley-mta.service').slice(-2000)}`);
  expect(heldDelivered()).toBe(10);
}, 300_000);

it('a config change published as a deploy publishes it reaches every node on its next config-sync tick and is applied without dropping a session, proxies included', async () => {
  // The fleet as it runs now (the replaced slot's old instance is gone).
  const current = [...booted, ...replacements];
  const mta = current.find((i) => i.spec.role === 'mta');
  if (!mta) throw new Error('no running MTA');
  const held = await rehearsal.world.holdSession(mta.privateIp);
  const pids = new Map(current.map((i) => [i.name, i.runner.status(`volley-${i.spec.role}.service`).mainPid]));

  // The deploy: a new MTA config object and its URL in the parameter; each proxy's parameter changed.
  const mtaParam = '/volley/rehearsal/mta/config-url';
  const url = /^s3:\/\/([^/]+)\/((.+)\/[^/]+)$/.exec(rehearsal.aws.ssm.parameters.get(mtaParam)?.value ?? '');
  if (!url) throw new Error('no MTA config URL under a prefix');
  const [, bucket, published, prefix] = url as unknown as [string, string, string, string];
  const text = (rehearsal.aws.s3.get(bucket, published) ?? Buffer.alloc(0)).toString('utf8');
  const doc = parseDocument(text);
  doc.setIn(['smtp', 'max_recipients'], 77);
  // Where cdk deploy publishes it: the Mta stack's own prefix, named by its content's hash. No instance's policy
  // names this key (the roles' policies do not change): the exact-key grant once refused it here.
  const next = doc.toString();
  const key = `${prefix}/${createHash('sha256').update(next).digest('hex')}.yaml`;
  rehearsal.aws.s3.put(bucket, key, next);
  rehearsal.aws.ssm.put(mtaParam, `s3://${bucket}/${key}`);
  for (const p of rehearsal.assembly.env.proxy.proxies) {
    const name = `/volley/rehearsal/proxy/${p.name}/config`;
    rehearsal.aws.ssm.put(name, `${rehearsal.aws.ssm.parameters.get(name)?.value.trimEnd()}\nlog_level: debug\n`);
  }

  // The next tick of every node's volley-config-sync.timer.
  for (const i of current) {
    await i.runner.trigger('volley-config-sync.timer');
    await waitUntil(() => i.runner.status('volley-config-sync.service').state === 'inactive', 30_000);
  }
  for (const i of current) {
    const file = i.hostPath(i.spec.role === 'mta' ? '/etc/volley/volley.yaml' : '/etc/volley/proxy.yaml');
    expect({ node: i.name, changed: readFileSync(file, 'utf8').includes(i.spec.role === 'mta' ? 'max_recipients: 77' : 'log_level: debug') }).toEqual({ node: i.name, changed: true });
    const unit = `volley-${i.spec.role}.service`;
    await waitUntil(() => /config refreshed|proxy: config reloaded/.test(i.runner.journal(unit)), 30_000, () => i.runner.journal(unit).slice(-1500));
    // Reloaded in place: the same main process.
    expect({ node: i.name, pid: i.runner.status(unit).mainPid }).toEqual({ node: i.name, pid: pids.get(i.name) });
  }
  // Each node read its new config with its own role's credentials, which the fake S3 holds to that role's grants.
  expect(rehearsal.aws.s3.denied).toEqual([]);
  // The session opened before the change is still usable, and its mail is delivered through the reloaded proxies.
  const before = rehearsal.world.delivered();
  expect(await held.send('after-reload@inbox.rehearsal.test')).toMatch(/^250 /);
  await waitUntil(() => rehearsal.world.delivered() === before + 1, 60_000, () => state(current));
}, 240_000);

it('a proxy replacement keeps its sending IPs (the ENI moves to the new instance) and the MTAs reconnect and deliver from them', async () => {
  const old = booted.find((i) => i.spec.role === 'proxy');
  if (!old) throw new Error('no proxy booted');
  const eni = rehearsal.assembly.interfaces.find((e) => e.slot === old.spec.slot);
  if (!eni) throw new Error(`no ENI for ${old.spec.slot}`);
  await rehearsal.terminate(old);
  booted.splice(booted.indexOf(old), 1);
  const fresh = await rehearsal.boot(old.spec);
  replacements.push(fresh);
  expect(fresh.userData.code).toBe(0);
  await waitUntil(() => rehearsal.aws.cloudFormation.signals.some((s) => s.uniqueId === fresh.instanceId), 150_000, () => state([fresh]));
  expect(rehearsal.aws.cloudFormation.signals.find((s) => s.uniqueId === fresh.instanceId)?.status).toBe('SUCCESS');
  const own = (await fresh.exec(['ip', '-4', '-o', 'address', 'show', 'dev', 'eth0'])).stdout;
  for (const ip of eni.privateIpAddresses) expect(own).toContain(`inet ${ip}/32`);

  // Mail through the ingress again: every sending IP, the moved ones included, is used by some session after the move.
  // The proxies keep MX sessions open and reuse them: count what each session delivered since now.
  const before = new Map(rehearsal.world.sessions().map((s) => [s.id, s.messages]));
  const sent = await rehearsal.world.send(INGRESS_IP, 'again@inbox.rehearsal.test', 40, 4);
  expect(sent).toBe(40);
  const after = () => rehearsal.world.sessions().filter((s) => s.messages > (before.get(s.id) ?? 0));
  const deliveredSince = () => after().reduce((n, s) => n + s.messages - (before.get(s.id) ?? 0), 0);
  await waitUntil(() => deliveredSince() === 40, 120_000, () => JSON.stringify(after()));
  const sources = new Set(after().map((s) => s.remote));
  for (const ip of eni.privateIpAddresses.slice(1)) expect({ ip, used: sources.has(ip) }).toEqual({ ip, used: true });
}, 300_000);

/**
 * The `Volley-<env>-Drain` document's script as SSM Run Command would run it:
 * read from the synthesised template, each {{ Parameter }} replaced by the
 * value given or its default, after the value is held to its allowedPattern
 * (SSM refuses the command otherwise).
 */
function drainCommand(values: Record<string, string>): string {
  const dir = rehearsal.assembly.directory;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.template.json'))) {
    const template = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { Resources?: Record<string, { Type: string; Properties?: { Name?: string; Content?: DocumentContent } }> };
    for (const r of Object.values(template.Resources ?? {})) {
      if (r.Type !== 'AWS::SSM::Document' || r.Properties?.Name !== `Volley-${rehearsal.assembly.env.name}-Drain` || !r.Properties.Content) continue;
      const { parameters, mainSteps } = r.Properties.Content;
      const value = (name: string): string => {
        const p = parameters[name];
        if (!p) throw new Error(`the document has no parameter ${name}`);
        const v = values[name] ?? p.default;
        if (v === undefined) throw new Error(`parameter ${name} is required`);
        if (p.allowedPattern && !new RegExp(p.allowedPattern).test(v)) throw new Error(`${name}=${v} does not match ${p.allowedPattern}`);
        if (p.allowedValues && !p.allowedValues.includes(v)) throw new Error(`${name}=${v} is not one of ${p.allowedValues.join(', ')}`);
        return v;
      };
      return mainSteps[0].inputs.runCommand.map((line) => line.replace(/\{\{ *(\w+) *\}\}/g, (_, name: string) => value(name))).join('\n');
    }
  }
  throw new Error('no drain document in the synthesised app');
}

interface DocumentContent {
  parameters: Record<string, { default?: string; allowedPattern?: string; allowedValues?: string[] }>;
  mainSteps: { inputs: { runCommand: string[] } }[];
}

it('the drain runbook as deployed: the Drain document run on one MTA moves its queue to the other, which delivers each message once; the drained MTA stays stopped and starts again clean', async () => {
  const mtas = [...booted, ...replacements].filter((i) => i.spec.role === 'mta');
  const [source, destination] = mtas;
  if (!source || !destination) throw new Error('two running MTAs are needed');
  const unit = 'volley-mta.service';
  // The operator's admin token: its hash published in the MTAs' config as a deploy publishes it (README: drain on AWS), the token on the source.
  const token = randomBytes(24).toString('hex');
  const mtaParam = '/volley/rehearsal/mta/config-url';
  const url = /^s3:\/\/([^/]+)\/(.+)$/.exec(rehearsal.aws.ssm.parameters.get(mtaParam)?.value ?? '');
  if (!url) throw new Error('no MTA config URL');
  const doc = parseDocument((rehearsal.aws.s3.get(url[1] as string, url[2] as string) ?? Buffer.alloc(0)).toString('utf8'));
  doc.setIn(['admin', 'tokens'], [{ name: 'rehearsal-drain', sha256: createHash('sha256').update(token).digest('hex') }]);
  // Beside the object the deploy published (a slot role reads only its own stack's asset prefix).
  const key = (url[2] as string).replace(/[^/]*$/, 'drain-deploy.yaml');
  rehearsal.aws.s3.put(url[1] as string, key, doc.toString());
  rehearsal.aws.ssm.put(mtaParam, `s3://${url[1]}/${key}`);
  for (const i of [source, destination]) {
    const refreshes = (i.runner.journal(unit).match(/config refreshed/g) ?? []).length;
    await i.runner.trigger('volley-config-sync.timer');
    await waitUntil(() => i.runner.status('volley-config-sync.service').state === 'inactive', 30_000);
    await waitUntil(() => (i.runner.journal(unit).match(/config refreshed/g) ?? []).length > refreshes, 30_000, () => i.runner.journal(unit).slice(-1500));
  }
  writeFileSync(source.hostPath('/etc/volley/admin.token'), token, { mode: 0o600 });

  // Mail only the source holds: its delivery paused, so the queue the drain moves is these ten.
  const paused = await source.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '-H', `Authorization: Bearer ${token}`, 'http://127.0.0.1:8025/queue/pause']);
  expect(paused.stdout).toBe('200');
  const to = 'drained@inbox.rehearsal.test';
  const copies = (): number => rehearsal.world.sessions().reduce((n, s) => n + s.recipients.filter((r) => r === to).length, 0);
  expect(await rehearsal.world.send(source.privateIp, to, 10, 2)).toBe(10);
  expect(copies()).toBe(0);

  // aws ssm send-command --document-name Volley-rehearsal-Drain --parameters Destinations=<the other MTA>
  const drainStarted = Date.now();
  const run = await source.exec(['bash', '-c', drainCommand({ Destinations: destination.privateIp })]);
  process.stdout.write(`rehearsal: the Drain document moved ${source.name}'s queue to ${destination.name} in ${Date.now() - drainStarted} ms (exit ${run.code})\n`);
  expect({ code: run.code, stderr: run.code === 0 ? '' : run.stderr.slice(-2000) + run.stdout.slice(-2000) }).toEqual({ code: 0, stderr: '' });
  await waitUntil(() => copies() >= 10, 60_000, () => `${copies()} delivered\n${destination.runner.journal(unit).slice(-1500)}`);
  expect(copies()).toBe(10);
  expect(source.runner.status(unit).state).toBe('inactive');

  // Started again (the runbook's alternative to retiring it): the unit comes up on the volume the drain (as root) wrote, with nothing queued.
  await source.runner.start(unit);
  await waitUntil(async () => (await source.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8025/readyz'])).stdout === '200', 60_000, () => source.runner.journal(unit).slice(-2000));
  const queue = await source.exec(['curl', '-s', '-H', `Authorization: Bearer ${token}`, 'http://127.0.0.1:8025/queue']);
  expect((JSON.parse(queue.stdout) as { queued?: number }).queued).toBe(0);
  expect(copies()).toBe(10);
}, 300_000);
