// What `cdk deploy` would hand the rehearsal's instances, read from a real
// offline synth of the `rehearsal` environment (stacks/environments/
// rehearsal.ts) with the packaged runtime (dist/asset): each launch template's
// user data, every SSM parameter's value, every S3 asset object (the runtime
// zip, the MTAs' config file) and the secrets' names. Nothing here is written
// by hand: the fakes are loaded from the templates and asset manifests, so a
// change to the stacks is what the rehearsal runs.
import { App } from 'aws-cdk-lib';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRuntime } from '../../bin/package-asset';
import type { S3Grant } from './fake-aws/s3';
import { type EnvironmentConfig, loadEnvironment } from '../../stacks/environments';
import { mtaPairs } from '../../stacks/environments/layout';
import { addVolleyEnvironment, VOLLEY_APP_CONTEXT } from '../../stacks/volley-app';

export const REPO_ROOT = resolve(__dirname, '../..');
export const REHEARSAL_ENV = 'rehearsal';

type Template = { Resources?: Record<string, { Type: string; Properties?: Record<string, unknown> }>; Outputs?: Record<string, { Value: unknown; Export?: { Name: string } }> };

/** One instance as a launch template describes it. */
export interface InstanceSpec {
  readonly stack: string;
  /** The launch template's logical id. */
  readonly launchTemplate: string;
  /** The user data script, intrinsic functions resolved as CloudFormation would. */
  readonly userData: string;
  /** The KEY=value lines the user data writes to /etc/volley/instance.env. */
  readonly instanceEnv: Readonly<Record<string, string>>;
  readonly role: 'mta' | 'proxy';
  readonly slot: string;
  /**
   * The IAM role of its instance profile: its logical id (the name the
   * rehearsal's IMDS serves), its S3 statements and its Secrets Manager ones,
   * ARNs resolved (what the fake S3 and the fake Secrets Manager enforce).
   */
  readonly iamRole: { readonly name: string; readonly s3: readonly S3Grant[]; readonly secretsManager: readonly S3Grant[] };
}

export interface S3Object {
  readonly bucket: string;
  readonly key: string;
  /** The object's bytes: a file asset as is, a directory asset zipped as cdk-assets would. */
  readonly body: () => Buffer;
}

/** An MTA slot's EBS volume as the Storage/Mta stack declares it: the bootstrap finds it by its slot tag. */
export interface VolumeSpec {
  readonly logicalId: string;
  readonly slot: string;
  readonly availabilityZone: string;
  readonly sizeGiB: number;
}

/** A proxy slot's sending ENI: its primary IP (the one MTAs dial) first, then the sending IPs. */
export interface InterfaceSpec {
  readonly logicalId: string;
  readonly slot: string;
  readonly availabilityZone: string;
  readonly privateIpAddresses: readonly string[];
}

export interface RehearsalAssembly {
  readonly env: EnvironmentConfig;
  readonly directory: string;
  readonly packageDir: string;
  readonly instances: readonly InstanceSpec[];
  /** SSM parameter name -> value, resolved. */
  readonly parameters: ReadonlyMap<string, string>;
  readonly objects: readonly S3Object[];
  /** Secrets Manager secrets the stacks create: name -> ARN the templates resolve to. */
  readonly secrets: ReadonlyMap<string, string>;
  readonly volumes: readonly VolumeSpec[];
  readonly interfaces: readonly InterfaceSpec[];
}

/** The ARN a secret of this name resolves to in the rehearsal (as the fake Secrets Manager names it). */
export function secretArn(env: Pick<EnvironmentConfig, 'region' | 'account'>, name: string): string {
  return `arn:aws:secretsmanager:${env.region}:${env.account}:secret:${name}-AbCdEf`;
}

/** Thrown for a template construct the resolver does not know: the rehearsal must not guess a value. */
export class AssemblyError extends Error {
  readonly code = 'EREHEARSALASSEMBLY';
}

/**
 * Synthesises the rehearsal environment offline, as `cdk synth -c
 * env=rehearsal` does (the runtime is packaged from this checkout unless
 * packageDir names one already built).
 */
export function synthRehearsal(options: { packageDir?: string; env?: EnvironmentConfig } = {}): RehearsalAssembly {
  // A variant of the rehearsal environment (the HA pair check's mta.ha), validated as a file is.
  const env = options.env ?? loadEnvironment(REHEARSAL_ENV, REPO_ROOT);
  const packageDir = options.packageDir ?? packageRuntime({ repoRoot: REPO_ROOT });
  const app = new App({ context: VOLLEY_APP_CONTEXT });
  addVolleyEnvironment(app, { config: env, repoRoot: REPO_ROOT, packageDir });
  return readAssembly(app.synth(), env, packageDir);
}

export function readAssembly(assembly: CloudAssembly, env: EnvironmentConfig, packageDir: string): RehearsalAssembly {
  const templates = new Map<string, Template>(assembly.stacks.map((s) => [s.stackName, s.template as Template]));
  const secrets = new Map<string, string>();
  for (const template of templates.values()) {
    for (const r of Object.values(template.Resources ?? {})) {
      if (r.Type === 'AWS::SecretsManager::Secret') secrets.set(String(r.Properties?.Name), secretArn(env, String(r.Properties?.Name)));
    }
  }
  // Resolved when imported: other exports (subnet ids, ...) have no rehearsal value and are never needed.
  const exports = new Map<string, () => unknown>();
  for (const [stack, template] of templates) {
    for (const output of Object.values(template.Outputs ?? {})) {
      if (output.Export) exports.set(output.Export.Name, () => resolveIn(stack, template, output.Value));
    }
  }

  function resolveIn(stack: string, template: Template, value: unknown): unknown {
    const pseudo: Record<string, string> = { 'AWS::Region': env.region, 'AWS::AccountId': env.account, 'AWS::StackName': stack, 'AWS::Partition': 'aws', 'AWS::URLSuffix': 'amazonaws.com' };
    const walk = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(walk);
      if (v === null || typeof v !== 'object') return v;
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 1) {
        const [fn, arg] = entries[0] as [string, unknown];
        if (fn === 'Ref') {
          const name = String(arg);
          if (name in pseudo) return pseudo[name];
          const resource = template.Resources?.[name];
          if (resource?.Type === 'AWS::SecretsManager::Secret') return secretArn(env, String(resource.Properties?.Name));
          throw new AssemblyError(`${stack}: Ref ${name} (${resource?.Type ?? 'unknown'}) has no rehearsal value`);
        }
        if (fn === 'Fn::Join') {
          const [separator, parts] = arg as [string, unknown[]];
          return (walk(parts) as unknown[]).map(String).join(separator);
        }
        if (fn === 'Fn::Base64') return walk(arg); // kept as text: the rehearsal runs it, EC2 would decode it
        if (fn === 'Fn::ImportValue') {
          const name = String(walk(arg));
          const exported = exports.get(name);
          if (!exported) throw new AssemblyError(`${stack}: Fn::ImportValue ${name} is exported by no stack`);
          return exported();
        }
        if (fn === 'Fn::Sub' && typeof arg === 'string') {
          return arg.replace(/\$\{([^}]+)\}/g, (_, key: string) => {
            if (key in pseudo) return pseudo[key] as string;
            throw new AssemblyError(`${stack}: Fn::Sub \${${key}} has no rehearsal value`);
          });
        }
        if (fn.startsWith('Fn::')) throw new AssemblyError(`${stack}: ${fn} is not resolved by the rehearsal`);
      }
      return Object.fromEntries(entries.map(([k, x]) => [k, walk(x)]));
    };
    return walk(value);
  }

  /**
   * The launch template's instance profile -> its role -> the S3 and Secrets
   * Manager statements of the role's policies. Only those are resolved (others
   * name resources the rehearsal has no value for, e.g. a volume's id); one
   * that does not resolve throws: the fakes must enforce the real grant, not a guess.
   */
  function instanceRole(stack: string, template: Template, id: string, profile: unknown): InstanceSpec['iamRole'] {
    const getAtt = (profile as { Arn?: { 'Fn::GetAtt'?: [string, string] } } | undefined)?.Arn?.['Fn::GetAtt'];
    const roles = getAtt ? (template.Resources?.[getAtt[0]]?.Properties?.Roles as { Ref?: string }[] | undefined) : undefined;
    const name = roles?.length === 1 ? roles[0]?.Ref : undefined;
    if (!name || template.Resources?.[name]?.Type !== 'AWS::IAM::Role') throw new AssemblyError(`${stack}/${id}: no instance profile with one role of this stack`);
    type Statement = { Effect?: string; Action?: string | string[]; Resource?: unknown };
    const documents: { PolicyDocument?: { Statement?: Statement[] } }[] = [
      ...((template.Resources?.[name]?.Properties?.Policies ?? []) as { PolicyDocument?: { Statement?: Statement[] } }[]),
      ...Object.values(template.Resources ?? {})
        .filter((r) => r.Type === 'AWS::IAM::Policy' && ((r.Properties?.Roles ?? []) as { Ref?: string }[]).some((x) => x.Ref === name))
        .map((r) => r.Properties as { PolicyDocument?: { Statement?: Statement[] } }),
    ];
    const grants = (service: string): S3Grant[] => {
      const out: S3Grant[] = [];
      for (const statement of documents.flatMap((d) => d.PolicyDocument?.Statement ?? [])) {
        const actions = [statement.Action ?? []].flat();
        if (statement.Effect !== 'Allow' || !actions.some((a) => a.startsWith(`${service}:`) || a === '*')) continue;
        out.push({ actions, resources: [resolveIn(stack, template, statement.Resource)].flat().map(String) });
      }
      return out;
    };
    return { name, s3: grants('s3'), secretsManager: grants('secretsmanager') };
  }

  const instances: InstanceSpec[] = [];
  const parameters = new Map<string, string>();
  const volumes: VolumeSpec[] = [];
  const interfaces: InterfaceSpec[] = [];
  for (const [stack, template] of templates) {
    for (const [id, r] of Object.entries(template.Resources ?? {})) {
      if (r.Type === 'AWS::EC2::NetworkInterface') {
        const tags = (r.Properties?.Tags ?? []) as { Key: string; Value: string }[];
        const slot = tags.find((t) => t.Key === 'volley:slot')?.Value;
        if (!slot) throw new AssemblyError(`${stack}/${id}: an interface without a volley:slot tag`);
        // A sending ENI lists its addresses; a mirror ENI names its one fixed IP (PrivateIpAddress), which EC2 lists as its primary.
        const single = r.Properties?.PrivateIpAddress;
        const ips = (r.Properties?.PrivateIpAddresses ?? (typeof single === 'string' ? [{ PrivateIpAddress: single, Primary: true }] : [])) as { PrivateIpAddress: string; Primary: boolean }[];
        if (ips.length === 0) throw new AssemblyError(`${stack}/${id}: an interface with no private IP the rehearsal can give it`);
        const ordered = [...ips.filter((i) => i.Primary), ...ips.filter((i) => !i.Primary)].map((i) => i.PrivateIpAddress);
        // The subnet is a token; the environment file says which AZ holds this primary IP (a proxy's, or a pair node's mirror IP).
        const az = env.proxy.proxies.find((p) => p.interfaceIp === ordered[0])?.availabilityZone ?? pairMember(env, slot)?.availabilityZone;
        if (!az) throw new AssemblyError(`${stack}/${id}: no proxy or pair node of the environment has the primary IP ${ordered[0]}`);
        interfaces.push({ logicalId: id, slot, availabilityZone: az, privateIpAddresses: ordered });
      }
      if (r.Type === 'AWS::EC2::Volume') {
        const tags = (r.Properties?.Tags ?? []) as { Key: string; Value: string }[];
        const slot = tags.find((t) => t.Key === 'volley:slot')?.Value;
        if (!slot) throw new AssemblyError(`${stack}/${id}: a volume without a volley:slot tag`);
        volumes.push({ logicalId: id, slot, availabilityZone: String(resolveIn(stack, template, r.Properties?.AvailabilityZone)), sizeGiB: Number(r.Properties?.Size) });
      }
      if (r.Type === 'AWS::EC2::LaunchTemplate') {
        const data = r.Properties?.LaunchTemplateData as { UserData?: unknown } | undefined;
        const userData = resolveIn(stack, template, data?.UserData);
        if (typeof userData !== 'string') throw new AssemblyError(`${stack}/${id}: no user data`);
        const instanceEnv = instanceEnvOf(userData);
        const role = instanceEnv.VOLLEY_ROLE;
        if (role !== 'mta' && role !== 'proxy') throw new AssemblyError(`${stack}/${id}: VOLLEY_ROLE is ${role ?? 'missing'}`);
        const iamRole = instanceRole(stack, template, id, (data as { IamInstanceProfile?: unknown } | undefined)?.IamInstanceProfile);
        instances.push({ stack, launchTemplate: id, userData, instanceEnv, role, slot: instanceEnv.VOLLEY_SLOT ?? '', iamRole });
      }
      if (r.Type === 'AWS::SSM::Parameter') {
        const value = resolveIn(stack, template, r.Properties?.Value);
        parameters.set(String(r.Properties?.Name), String(value));
      }
    }
  }
  return { env, directory: assembly.directory, packageDir, instances, parameters, objects: assetObjects(assembly.directory, env), secrets, volumes, interfaces };
}

/** The node of an HA pair (mta.ha) whose volley:slot tag this is, if any. */
export function pairMember(env: EnvironmentConfig, memberId: string): (ReturnType<typeof mtaPairs>[number]['a'] & { pair: ReturnType<typeof mtaPairs>[number] }) | undefined {
  if (!env.mta.ha) return undefined;
  for (const pair of mtaPairs(env.name, env.network.vpcCidr, env.availabilityZones, env.mta.slotsPerAz)) {
    for (const m of [pair.a, pair.b]) if (m.memberId === memberId) return { ...m, pair };
  }
  return undefined;
}

/** The lines between `cat > /etc/volley/instance.env <<'VOLLEY_ENV'` and `VOLLEY_ENV`. */
export function instanceEnvOf(userData: string): Record<string, string> {
  const m = /cat > \/etc\/volley\/instance\.env <<'VOLLEY_ENV'\n([\s\S]*?)\nVOLLEY_ENV\n/.exec(userData);
  if (!m) throw new AssemblyError('the user data writes no /etc/volley/instance.env');
  return Object.fromEntries(
    (m[1] as string).split('\n').map((line) => {
      const at = line.indexOf('=');
      return [line.slice(0, at), line.slice(at + 1)];
    }),
  );
}

interface AssetManifest {
  files?: Record<string, { source: { path: string; packaging?: 'file' | 'zip' }; destinations: Record<string, { bucketName: string; objectKey: string }> }>;
}

/** Every file asset of every stack, at the bucket and key its manifest names. */
function assetObjects(directory: string, env: EnvironmentConfig): S3Object[] {
  const sub = (s: string): string => s.replace(/\$\{AWS::AccountId\}/g, env.account).replace(/\$\{AWS::Region\}/g, env.region).replace(/\$\{AWS::Partition\}/g, 'aws');
  const seen = new Map<string, S3Object>();
  for (const name of readdirSync(directory).filter((n) => n.endsWith('.assets.json'))) {
    const manifest = JSON.parse(readFileSync(join(directory, name), 'utf8')) as AssetManifest;
    for (const file of Object.values(manifest.files ?? {})) {
      const source = join(directory, file.source.path);
      if (!existsSync(source)) throw new AssemblyError(`asset ${file.source.path} is missing from ${directory}`);
      for (const d of Object.values(file.destinations)) {
        const bucket = sub(d.bucketName);
        const key = sub(d.objectKey);
        const body = file.source.packaging === 'zip' ? () => zipDirectory(source) : () => readFileSync(source);
        seen.set(`${bucket}/${key}`, { bucket, key, body });
      }
    }
  }
  return [...seen.values()];
}

/** As cdk-assets publishes a directory asset: a zip of its contents (modes kept, so bin/* stay executable). */
function zipDirectory(dir: string): Buffer {
  return execFileSync('zip', ['-q', '-r', '-X', '-', '.'], { cwd: dir, maxBuffer: 512 * 1024 * 1024 });
}
