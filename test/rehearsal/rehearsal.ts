// The rehearsal's world, built from a synth of the rehearsal environment: one
// network namespace carrying the environment's addresses, the fake AWS
// endpoints loaded from the templates (parameters, asset objects, the slots'
// volumes as loop devices, the proxy-link secret) and bridged into the
// namespace at their loopback addresses, and instances booted from their own
// launch templates' user data. close() removes everything, also after a failure.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProxyLinkSecret, newProxyCa } from '../../runtime/bootstrap/proxy-link';
import { packageRuntime } from '../../bin/package-asset';
import { type InstanceSpec, type RehearsalAssembly, REPO_ROOT, synthRehearsal } from './assembly';
import { INSTANCE_LIKE_CREDENTIALS } from './fake-aws/env-for-test';
import { type FakeAws, startFakeAws } from './fake-aws/index';
import { bootInstance, type Instance } from './instance';
import { createLoopDevice, createNetns, type LoopDevice, type Netns } from './netns';
import { bridgePorts, type PortBridge } from './port-bridge';

export interface Rehearsal {
  readonly assembly: RehearsalAssembly;
  readonly aws: FakeAws;
  readonly netns: Netns;
  readonly dir: string;
  /** Boots the instance of this launch template as EC2 would start a new one for its slot. */
  boot(spec: InstanceSpec): Promise<Instance>;
  close(): Promise<void>;
}

/** EC2-like ids from a logical id: stable per run, distinct per resource. */
const hexId = (prefix: string, seed: string, n: number): string => `${prefix}-0${Buffer.from(seed).toString('hex').slice(-16).padStart(16, '0')}${n}`.slice(0, prefix.length + 18);

export async function startRehearsal(options: { volumeMiB?: number } = {}): Promise<Rehearsal> {
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
    const assembly = synthRehearsal({ packageDir });
    const env = assembly.env;
    const byIdDir = join(dir, 'by-id');
    mkdirSync(byIdDir);
    const first = assembly.instances[0] as InstanceSpec;
    const aws = await startFakeAws({
      byIdDir,
      account: env.account,
      instance: { instanceId: 'i-0000000000000000', availabilityZone: env.availabilityZones[0] as string, region: env.region, localIpv4: '0.0.0.0', roleName: `volley-${first.role}` },
    });
    cleanups.push(() => aws.close());
    for (const [name, value] of assembly.parameters) aws.ssm.put(name, value);
    for (const o of assembly.objects) aws.s3.put(o.bucket, o.key, o.body());
    // What Secrets Manager generates (64 letters and digits) plus what `volley proxy-link init` adds (the proxy CA).
    const ca = await newProxyCa(`volley ${env.name} proxy CA`);
    for (const name of assembly.secrets.keys()) {
      aws.secretsManager.put(name, formatProxyLinkSecret({ secret: randomBytes(48).toString('base64url').slice(0, 64), caCert: ca.cert, caKey: ca.key }));
    }
    const loops: LoopDevice[] = [];
    cleanups.push(() => loops.forEach((l) => l.detach()));
    for (const [i, v] of assembly.volumes.entries()) {
      const loop = createLoopDevice(dir, options.volumeMiB ?? 256);
      loops.push(loop);
      aws.ec2.addVolume({ volumeId: hexId('vol', v.logicalId, i), availabilityZone: v.availabilityZone, sizeGiB: v.sizeGiB, state: 'available', tags: { 'volley:slot': v.slot }, loopDevice: loop.device });
    }
    const netns = createNetns();
    cleanups.push(() => netns.close());
    const endpoints = Object.entries(aws.env)
      .filter(([k, v]) => k.startsWith('AWS_ENDPOINT_URL_') || (k === 'AWS_EC2_METADATA_SERVICE_ENDPOINT' && v.startsWith('http')))
      .map(([, v]) => new URL(v));
    const bridge: PortBridge = await bridgePorts(
      netns,
      dir,
      endpoints.map((u) => ({ host: u.hostname, port: Number(u.port), target: { host: u.hostname, port: Number(u.port) } })),
    );
    cleanups.push(() => bridge.close());
    const awsEnv = Object.fromEntries(Object.entries({ ...INSTANCE_LIKE_CREDENTIALS, ...aws.env }).filter((e): e is [string, string] => e[1] !== undefined));

    let booted = 0;
    const boot = async (spec: InstanceSpec): Promise<Instance> => {
      const n = ++booted;
      const az = (env.availabilityZones.find((a) => spec.slot.includes(a)) ?? env.proxy.proxies.find((p) => p.name === spec.slot.split('-').slice(-2).join('-'))?.availabilityZone ?? env.availabilityZones[0]) as string;
      // The instance being started is the one the (single) fake IMDS describes.
      aws.imds.metadata = { instanceId: hexId('i', `${spec.slot}-${n}`, n), availabilityZone: az, region: env.region, localIpv4: '0.0.0.0', roleName: `volley-${spec.role}` };
      const instance = await bootInstance({ name: `${spec.slot}-${n}`, spec, dir: join(dir, `instance-${n}`), netns, awsEnv, byIdDir });
      cleanups.push(() => instance.close());
      return instance;
    };
    return { assembly, aws, netns, dir, boot, close };
  } catch (err) {
    await close();
    throw err;
  }
}
