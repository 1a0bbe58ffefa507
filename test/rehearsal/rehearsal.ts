// The rehearsal's world, built from a synth of the rehearsal environment: one
// network namespace carrying the environment's addresses, the fake AWS
// endpoints loaded from the templates (parameters, asset objects, the slots'
// volumes as loop devices, the proxy-link secret) and bridged into the
// namespace at their loopback addresses, the operator's file secret (a DKIM
// key) as `aws secretsmanager create-secret` would put it, and instances booted from their own
// launch templates' user data. close() removes everything, also after a failure.
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatDrainSecret } from '../../runtime/bootstrap/drain-secret';
import { formatProxyCaSecret, formatProxyLinkSecret, issueProxyCertificate, newProxyCa } from '../../runtime/bootstrap/proxy-link';
import { packageRuntime } from '../../bin/package-asset';
import { type InstanceSpec, pairMember, type RehearsalAssembly, REPO_ROOT, synthRehearsal } from './assembly';
import type { EnvironmentConfig } from '../../stacks/environments';
import { INSTANCE_LIKE_CREDENTIALS } from './fake-aws/env-for-test';
import { type FakeAws, startFakeAws } from './fake-aws/index';
import { planSubnets } from '../../stacks/environments/layout';
import { serve } from './fake-aws/http';
import { FakeImds } from './fake-aws/imds';
import { bootInstance, type Instance } from './instance';
import { createLoopDevice, type LoopDevice, type Netns } from './netns';
import { bridgePorts } from './port-bridge';
import { createVpc, type Vpc } from './vpc';
import { startWorld, type World } from './world';

/** "The internet" in the hub namespace: the sink MX and the DNS server the rehearsal config names (TEST-NET-1). */
export const SINK_MX_IP = '192.0.2.25';
/** throttled.rehearsal.test's own MX, so a session's address says which domain it served. */
export const THROTTLED_MX_IP = '192.0.2.26';
/** held.rehearsal.test's MX: down until the test opens it, so its mail stays queued. */
export const HELD_MX_IP = '192.0.2.27';
export const DNS_IP = '192.0.2.53';
/** The events webhook's receiver (the rehearsal config's `hooks` sink): HTTPS with a certificate for this address. */
export const WEBHOOK_IP = '192.0.2.80';
export const WEBHOOK_PORT = 8443;
/** Where the rehearsal's config reads the webhook's signing secret and the receiver's CA: files of mta.fileSecrets too. */
export const WEBHOOK_SECRET_FILE = '/etc/volley/secrets/webhook/hooks.secret';
export const WEBHOOK_CA_FILE = '/etc/volley/secrets/webhook/receiver-ca.pem';
/** The NLB's address in the first public subnet: the lb and the injecting clients (inside relay_from, 10.0.0.0/8). */
export const INGRESS_IP = '10.60.0.250';

/** The sender domain the world's swaks uses, and the DKIM selector the rehearsal's MTA config signs it with. */
export const SENDER_DOMAIN = 'sender.rehearsal.test';
export const DKIM_SELECTOR = 'rehearsal';
/** Where the rehearsal's config (assets/config/volley.rehearsal.yaml) reads the key: a file of mta.fileSecrets. */
export const DKIM_KEY_FILE = `/etc/volley/secrets/dkim/${SENDER_DOMAIN}.pem`;

export type Booted = Instance & { readonly netns: Netns; readonly instanceId: string; readonly privateIp: string };

export interface Rehearsal {
  readonly assembly: RehearsalAssembly;
  readonly aws: FakeAws;
  readonly vpc: Vpc;
  readonly world: World;
  readonly dir: string;
  /** The operator's DKIM key for SENDER_DOMAIN, as DNS would publish it: TXT record name -> text (dkimVerify's map). */
  readonly dkimRecords: Record<string, string>;
  /** The webhook secret (whsec_…) the operator put in the file secret: the receiver's side of it. */
  webhookSecret: string;
  /**
   * The operator rotating a file of the file secret (`aws secretsmanager put-secret-value`): `files` replace the
   * ones of that path, the others stay.
   */
  putFiles(files: Record<string, string>): void;
  /** Boots the instance of this launch template as EC2 would start a new one for its slot, in its own namespace on the VPC. */
  boot(spec: InstanceSpec): Promise<Booted>;
  /**
   * Terminates an instance as a rolling update does: its daemon stopped as
   * systemd stops it at shutdown (KillMode, TimeoutStopSec), then the instance
   * gone, and EC2 detaching its volume or ENI. With `crash`, as a lost
   * instance (a host failure, an AZ gone): no stop, every process SIGKILLed.
   */
  terminate(instance: Booted, options?: { crash?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** EC2-like ids from a logical id: stable per run, distinct per resource. */
const hexId = (prefix: string, seed: string, n: number): string => `${prefix}-0${createHash('sha256').update(`${seed}/${n}`).digest('hex').slice(0, 16)}`;

export async function startRehearsal(options: { volumeMiB?: number; env?: EnvironmentConfig } = {}): Promise<Rehearsal> {
  const dir = mkdtempSync(join(tmpdir(), 'volley-rehearsal-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async (): Promise<void> => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        process.stderr.write(`rehearsal clean-up: ${(err as Error).message}\n`);
      }
    }
  };
  try {
    // dist/volley.js is built by npm test's pretest (or the rehearsal script): packaged here so dist/asset is not raced.
    const packageDir = packageRuntime({ repoRoot: REPO_ROOT, build: false, outDir: join(dir, 'asset') });
    const assembly = synthRehearsal({ packageDir, env: options.env });
    const env = assembly.env;
    const byIdDir = join(dir, 'by-id');
    mkdirSync(byIdDir);
    const namespaces = new Map<string, Netns>(); // instance id -> its namespace
    let vpc: Vpc | undefined;
    const aws = await startFakeAws({
      byIdDir,
      account: env.account,
      // Each instance has its own IMDS (below); this one answers nothing an instance asks.
      instance: { instanceId: 'i-00000000000000000', availabilityZone: env.availabilityZones[0] as string, region: env.region, localIpv4: '0.0.0.0', roleName: 'none' },
      // The ENI's addresses come up on the instance it is attached to, as its secondary IPs would.
      onAttachInterface: (eni) => {
        const ns = eni.attachment && namespaces.get(eni.attachment.instanceId);
        if (ns && vpc) for (const a of eni.privateIpAddresses) vpc.addAddress(ns, a);
      },
    });
    cleanups.push(() => aws.close());
    for (const [name, value] of assembly.parameters) aws.ssm.put(name, value);
    for (const o of assembly.objects) aws.s3.put(o.bucket, o.key, o.body());
    for (const [i, e] of assembly.interfaces.entries()) {
      aws.ec2.addInterface({ networkInterfaceId: hexId('eni', e.logicalId, i), availabilityZone: e.availabilityZone, status: 'available', privateIpAddresses: [...e.privateIpAddresses], tags: { 'volley:slot': e.slot } });
    }
    // What Secrets Manager generates (64 letters and digits) plus what `volley proxy-link init` adds: the
    // proxy CA's certificate in the link secret every slot reads, its key in the one only proxies read.
    const ca = await newProxyCa(`volley ${env.name} proxy CA`);
    const secret = randomBytes(48).toString('base64url').slice(0, 64);
    // And the drain secret as CloudFormation generates it plus the CA `volley drain-secret init` adds: read by MTAs only, at each start.
    const drainCa = await newProxyCa(`volley ${env.name} drain CA`);
    const drainSecret = formatDrainSecret({ secret: randomBytes(48).toString('base64url').slice(0, 64), caCert: drainCa.cert, caKey: drainCa.key });
    // With mta.ha, the mirror secret likewise (the drain secret's shape): generated by CloudFormation, its CA added by `volley mirror-secret init`.
    const mirrorCa = await newProxyCa(`volley ${env.name} mirror CA`);
    const mirrorSecret = formatDrainSecret({ secret: randomBytes(48).toString('base64url').slice(0, 64), caCert: mirrorCa.cert, caKey: mirrorCa.key });
    for (const name of assembly.secrets.keys()) {
      const value = name.endsWith('/proxy-ca-key') ? formatProxyCaSecret(ca) : name.endsWith('/drain') ? drainSecret : name.endsWith('/mirror') ? mirrorSecret : formatProxyLinkSecret({ secret, caCert: ca.cert });
      aws.secretsManager.put(name, value);
    }
    // The operator's own secret of MTA files (mta.fileSecrets), created as `aws secretsmanager create-secret --name
    // volley/rehearsal/mta-files --secret-string file://files.json` would: the DKIM key the config signs the sender's
    // domain with. Not in any template (the stack only grants it), so not in assembly.secrets.
    // With it, the events webhook's signing secret and the CA its receiver's certificate is issued by.
    const dkim = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const hookCa = await newProxyCa('rehearsal webhook receiver CA');
    const hookPair = await issueProxyCertificate(hookCa, { name: 'hooks.rehearsal.test', ip: WEBHOOK_IP });
    const webhookSecret = `whsec_${randomBytes(32).toString('base64')}`;
    let operatorFiles: Record<string, string> = {
      [DKIM_KEY_FILE]: dkim.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      [WEBHOOK_SECRET_FILE]: `${webhookSecret}\n`,
      [WEBHOOK_CA_FILE]: hookCa.cert,
    };
    const putFiles = (files: Record<string, string>): void => {
      operatorFiles = { ...operatorFiles, ...files };
      for (const name of env.mta.fileSecrets ?? []) aws.secretsManager.put(name, JSON.stringify({ files: operatorFiles }));
    };
    putFiles({});
    const dkimRecords = { [`${DKIM_SELECTOR}._domainkey.${SENDER_DOMAIN}`]: `v=DKIM1; k=rsa; p=${dkim.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` };
    const loops: LoopDevice[] = [];
    cleanups.push(() => loops.forEach((l) => l.detach()));
    for (const [i, v] of assembly.volumes.entries()) {
      const loop = createLoopDevice(dir, options.volumeMiB ?? 256);
      loops.push(loop);
      aws.ec2.addVolume({ volumeId: hexId('vol', v.logicalId, i), availabilityZone: v.availabilityZone, sizeGiB: v.sizeGiB, state: 'available', tags: { 'volley:slot': v.slot }, loopDevice: loop.device });
    }
    const theVpc = createVpc([SINK_MX_IP, THROTTLED_MX_IP, HELD_MX_IP, DNS_IP, INGRESS_IP, WEBHOOK_IP]);
    vpc = theVpc;
    cleanups.push(() => theVpc.close());
    const endpoints = Object.entries(aws.env)
      .filter(([k, v]) => k.startsWith('AWS_ENDPOINT_URL_') || (k === 'AWS_EC2_METADATA_SERVICE_ENDPOINT' && v.startsWith('http')))
      .map(([k, v]) => ({ imds: k === 'AWS_EC2_METADATA_SERVICE_ENDPOINT', url: new URL(v) }));
    const awsEnv = Object.fromEntries(Object.entries({ ...INSTANCE_LIKE_CREDENTIALS, ...aws.env }).filter((e): e is [string, string] => e[1] !== undefined));
    const subnets = planSubnets(env.network.vpcCidr, env.availabilityZones);

    let booted = 0;
    const boot: Rehearsal['boot'] = async (spec) => {
      const n = ++booted;
      const az = spec.role === 'mta'
        ? (pairMember(env, spec.slot)?.availabilityZone ?? (env.availabilityZones.find((a) => spec.slot.includes(a)) as string))
        : (assembly.interfaces.find((e) => e.slot === spec.slot)?.availabilityZone as string);
      const subnet = subnets.find((p) => p.availabilityZone === az);
      if (!subnet) throw new Error(`${spec.slot}: no private subnet in ${az}`);
      // A fresh private IP in the slot's private subnet, as EC2 gives each new instance.
      const base = subnet.privateCidr.split('/')[0]?.split('.').map(Number) as number[];
      const privateIp = [base[0], base[1], base[2], (base[3] as number) + 10 + n].join('.');
      const instanceId = hexId('i', `${spec.slot}-${n}`, n);
      const netns = theVpc.join([privateIp]);
      namespaces.set(instanceId, netns);
      // Its own IMDS, reached inside its namespace where the SDK's variable points.
      // Its role's own credentials, so the fake S3 and Secrets Manager hold it to that role's statements, as IAM would.
      const accessKeyId = `ASIA${createHash('sha256').update(spec.iamRole.name).digest('hex').slice(0, 16).toUpperCase()}`;
      aws.s3.grant(accessKeyId, spec.iamRole.s3);
      aws.secretsManager.grant(accessKeyId, spec.iamRole.secretsManager);
      const imds = await serve(new FakeImds({ instanceId, availabilityZone: az, region: env.region, localIpv4: privateIp, roleName: spec.iamRole.name, accessKeyId }).handler);
      cleanups.push(() => imds.close());
      const instanceDir = join(dir, `instance-${n}`);
      mkdirSync(instanceDir);
      const bridge = await bridgePorts(
        netns,
        instanceDir,
        endpoints.map(({ imds: isImds, url }) => ({ host: url.hostname, port: Number(url.port), target: { host: url.hostname, port: isImds ? imds.port : Number(url.port) } })),
      );
      cleanups.push(() => bridge.close());
      const instance = await bootInstance({ name: `${spec.slot}-${n}`, spec, dir: join(instanceDir, 'root'), netns, awsEnv, byIdDir });
      cleanups.push(() => instance.close());
      const result: Booted = Object.assign(instance, { netns, instanceId, privateIp });
      closers.set(result, async () => {
        await instance.close();
        await bridge.close();
        await imds.close();
        netns.close();
        namespaces.delete(instanceId);
      });
      return result;
    };
    const closers = new Map<Booted, () => Promise<void>>();
    const terminate: Rehearsal['terminate'] = async (instance, options) => {
      const daemon = `volley-${instance.spec.role}.service`;
      if (!options?.crash && instance.runner.status(daemon).state === 'active') await instance.runner.stop(daemon);
      await closers.get(instance)?.();
      closers.delete(instance);
      for (const v of aws.ec2.volumes.values()) if (v.attachment?.instanceId === instance.instanceId) aws.ec2.release(v.volumeId);
      for (const e of aws.ec2.interfaces.values()) {
        if (e.attachment?.instanceId === instance.instanceId) {
          e.attachment = undefined;
          e.status = 'available';
        }
      }
    };
    const world = await startWorld(theVpc.hub, dir, {
      sinkIps: [SINK_MX_IP, THROTTLED_MX_IP, HELD_MX_IP],
      dnsIp: DNS_IP,
      clientIp: INGRESS_IP,
      volleyJs: join(packageDir, 'lib/volley.js'),
      webhook: { address: WEBHOOK_IP, port: WEBHOOK_PORT, cert: hookPair.cert, key: hookPair.key },
    });
    cleanups.push(() => world.close());
    const rehearsal: Rehearsal = {
      assembly, aws, vpc: theVpc, world, dir, dkimRecords, webhookSecret, boot, terminate, close,
      putFiles: (files) => {
        putFiles(files);
        if (files[WEBHOOK_SECRET_FILE]) rehearsal.webhookSecret = files[WEBHOOK_SECRET_FILE].trim();
      },
    };
    return rehearsal;
  } catch (err) {
    await close();
    throw err;
  }
}
