import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { IPV4_PER_ENI, knownInstanceTypes } from './instance-types';
import { cidrContains, parseCidr, parseIpv4 } from './ip';
import { mtaVolumeIds, planSubnets } from './layout';
import type { EnvironmentConfig } from './schema';
import { parseDuration } from '../../runtime/shared/units';

/** A bad environment config: `field` is the dotted path, e.g. `proxy.proxies[1].sendingIps[0]`. */
export class EnvironmentConfigError extends Error {
  constructor(
    readonly environment: string,
    readonly field: string,
    problem: string,
  ) {
    super(`environment "${environment}": ${field} ${problem}`);
    this.name = 'EnvironmentConfigError';
  }
}

type Fail = (field: string, problem: string) => never;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Walks the raw object by path so every message names the exact field.
class Reader {
  constructor(private readonly fail: Fail) {}

  at(root: unknown, path: string): unknown {
    let value: unknown = root;
    for (const key of path.split('.')) {
      if (typeof value !== 'object' || value === null) this.fail(path, 'is missing (its parent is not an object)');
      value = (value as Record<string, unknown>)[key];
    }
    return value;
  }

  string(root: unknown, path: string, pattern?: RegExp, hint?: string): string {
    const value = this.at(root, path);
    if (typeof value !== 'string' || value.length === 0) this.fail(path, 'must be a non-empty string');
    if (pattern && !pattern.test(value as string)) this.fail(path, `must be ${hint ?? `like ${pattern}`} (got "${String(value)}")`);
    return value as string;
  }

  integer(root: unknown, path: string, min: number, max: number): number {
    const value = this.at(root, path);
    if (typeof value !== 'number' || !Number.isInteger(value)) this.fail(path, 'must be an integer');
    if ((value as number) < min || (value as number) > max) this.fail(path, `must be between ${min} and ${max} (got ${String(value)})`);
    return value as number;
  }

  boolean(root: unknown, path: string): boolean {
    const value = this.at(root, path);
    if (typeof value !== 'boolean') this.fail(path, 'must be true or false');
    return value as boolean;
  }

  array(root: unknown, path: string, minLength: number): unknown[] {
    const value = this.at(root, path);
    if (!Array.isArray(value)) this.fail(path, 'must be a list');
    if ((value as unknown[]).length < minLength) this.fail(path, `must have at least ${minLength} entr${minLength === 1 ? 'y' : 'ies'}`);
    return value as unknown[];
  }
}

const NAME = /^[a-z][a-z0-9-]{0,30}$/;
const NAME_LONG = /^[a-z][a-z0-9-]{0,127}$/;
const PORT_MAX = 65535;
/** A lower-case DNS name of at least two labels, no trailing dot (what an MX record and inbound.domains take). */
const DNS_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** The secrets stacks/secrets-stack.ts creates (a test checks): an MTA must never be granted the proxy CA key through this list. */
const STACK_SECRETS = ['proxy-link', 'proxy-ca-key', 'drain', 'mirror'];

/**
 * mta.fileSecrets: names the MTA role is granted by ARN (`<name>-??????`), so
 * each must be this environment's (`volley/<env>/`), in Secrets Manager's
 * charset, not one the stack owns, and not end like the random suffix AWS
 * appends (`-` and six characters), which the grant's pattern could not tell
 * from another secret's name.
 */
function checkFileSecrets(r: Reader, raw: unknown, envName: string, fail: Fail): void {
  const prefix = `volley/${envName}/`;
  const names = r.array(raw, 'mta.fileSecrets', 0).map((_, i) => {
    const field = `mta.fileSecrets[${i}]`;
    const name = r.string(raw, `mta.fileSecrets.${i}`, /^volley\/[a-z0-9-]+\/[A-Za-z0-9_+=.@-][A-Za-z0-9/_+=.@-]{0,200}$/, `a Secrets Manager name ${prefix}<name> (letters, digits, /_+=.@-)`);
    if (!name.startsWith(prefix)) fail(field, `must start with ${prefix}: the MTAs read this environment's secrets only (got "${name}")`);
    if (STACK_SECRETS.includes(name.slice(prefix.length))) fail(field, `names a secret the stack creates (${name}); the MTAs' files go in a secret of their own`);
    if (/-[A-Za-z0-9]{6}$/.test(name)) fail(field, `must not end with "-" and six characters, as the suffix AWS appends to every secret's ARN does (got "${name}")`);
    return name;
  });
  if (new Set(names).size !== names.length) fail('mta.fileSecrets', 'must not repeat a secret');
}

/**
 * Checks a raw environment object and returns it typed. Throws an
 * EnvironmentConfigError naming the first bad field, so `cdk synth` stops
 * before any template is written. `repoRoot` resolves volleyConfigFile.
 */
export function validateEnvironment(raw: unknown, repoRoot: string): EnvironmentConfig {
  const envName = isRecord(raw) && typeof raw.name === 'string' ? raw.name : '(unnamed)';
  const fail: Fail = (field, problem) => {
    // Paths are walked as a.0.b; report them as written in the config, a[0].b.
    throw new EnvironmentConfigError(envName, field.replace(/\.(\d+)/g, '[$1]'), problem);
  };
  const r = new Reader(fail);

  r.string(raw, 'name', NAME, 'lower-case letters, digits and dashes');
  r.string(raw, 'account', /^\d{12}$/, 'a 12-digit AWS account id');
  const region = r.string(raw, 'region', /^[a-z]{2}(-[a-z]+)+-\d$/, 'an AWS region such as eu-west-1');
  const azs = r.array(raw, 'availabilityZones', 2);
  azs.forEach((_, i) => {
    const az = r.string(raw, `availabilityZones.${i}`);
    if (!new RegExp(`^${region}[a-z]$`).test(az)) fail(`availabilityZones[${i}]`, `must be an AZ of ${region} such as ${region}a (got "${az}")`);
  });
  const azNames = azs as string[];
  if (new Set(azNames).size !== azNames.length) fail('availabilityZones', 'must not repeat an AZ');
  r.string(raw, 'amiId', /^ami-[0-9a-f]{8}([0-9a-f]{9})?$/, 'a pinned AMI id (ami-…)');

  const configFile = r.string(raw, 'volleyConfigFile');
  if (!existsSync(resolve(repoRoot, configFile))) fail('volleyConfigFile', `names a file that does not exist: ${configFile}`);

  // network
  const vpcCidrText = r.string(raw, 'network.vpcCidr');
  const vpcCidr = parseCidr(vpcCidrText);
  if (!vpcCidr || vpcCidr.prefix < 16 || vpcCidr.prefix > 20) fail('network.vpcCidr', `must be a CIDR between /16 and /20 (got "${vpcCidrText}")`);
  r.integer(raw, 'network.natGateways', 1, azNames.length);
  r.array(raw, 'network.allowedCidrs', 1).forEach((_, i) => {
    const text = r.string(raw, `network.allowedCidrs.${i}`);
    const cidr = parseCidr(text);
    if (!cidr) fail(`network.allowedCidrs[${i}]`, `must be a CIDR (got "${text}")`);
    // Opening SMTP injection to the world would make the fleet an open relay target.
    if (cidr && cidr.prefix === 0) fail(`network.allowedCidrs[${i}]`, 'must not be 0.0.0.0/0: name the injector networks');
  });
  let subnets;
  try {
    subnets = planSubnets(vpcCidrText, azNames);
  } catch (err) {
    fail('network.vpcCidr', (err as Error).message);
  }

  // mta
  const mtaType = r.string(raw, 'mta.instanceType');
  if (!(mtaType in IPV4_PER_ENI)) fail('mta.instanceType', `must be one of ${knownInstanceTypes().join(', ')} (got "${mtaType}")`);
  const slotsPerAz = r.integer(raw, 'mta.slotsPerAz', 1, 20);
  const volumeSlots = r.array(raw, 'mta.volumeSlots', 1).map((_, i) => r.string(raw, `mta.volumeSlots.${i}`, NAME_LONG, 'a slot id such as <env>-mta-<az>-<n>'));
  if (new Set(volumeSlots).size !== volumeSlots.length) fail('mta.volumeSlots', 'must not repeat a slot');
  // A slot missing here would have no record of its volume, and its later removal would go unwarned.
  const ha = r.at(raw, 'mta.ha') === undefined ? false : r.boolean(raw, 'mta.ha');
  const unlisted = mtaVolumeIds(envName, azNames, slotsPerAz, ha).filter((slot) => !volumeSlots.includes(slot));
  if (unlisted.length > 0) fail('mta.volumeSlots', `must list every MTA slot the tier runs (its volume is retained): add ${unlisted.map((s) => `'${s}'`).join(', ')}`);
  const size = r.integer(raw, 'mta.volume.sizeGiB', 1, 65536);
  const iops = r.integer(raw, 'mta.volume.iops', 3000, 80000);
  if (iops > size * 500) fail('mta.volume.iops', `must be at most 500 per GiB for gp3 (${size * 500} for ${size} GiB, got ${iops})`);
  const throughput = r.integer(raw, 'mta.volume.throughputMiBps', 125, 2000);
  if (throughput > iops / 4) fail('mta.volume.throughputMiBps', `must be at most iops / 4 for gp3 (${iops / 4}, got ${throughput})`);
  const smtpPorts = r.array(raw, 'mta.smtpPorts', 1).map((_, i) => r.integer(raw, `mta.smtpPorts.${i}`, 1, PORT_MAX));
  const apiPort = r.integer(raw, 'mta.apiPort', 1, PORT_MAX);
  const adminPort = r.integer(raw, 'mta.adminPort', 1, PORT_MAX);
  const drainPort = r.integer(raw, 'mta.drainPort', 1, PORT_MAX);
  const mtaPorts = [...smtpPorts, apiPort, adminPort, drainPort];
  if (r.at(raw, 'mta.fileSecrets') !== undefined) checkFileSecrets(r, raw, envName, fail);
  if (ha) {
    mtaPorts.push(r.integer(raw, 'mta.mirrorPort', 1, PORT_MAX));
    const mode = r.at(raw, 'mta.mirrorMode');
    if (mode !== undefined && mode !== 'async' && mode !== 'sync') fail('mta.mirrorMode', `must be async or sync (got ${JSON.stringify(mode)})`);
    const policy = r.at(raw, 'mta.mirrorSyncPolicy');
    const timeout = r.at(raw, 'mta.mirrorSyncTimeout');
    if (mode !== 'sync') {
      for (const key of ['mirrorSyncPolicy', 'mirrorSyncTimeout']) if (r.at(raw, `mta.${key}`) !== undefined) fail(`mta.${key}`, 'is only read with mta.mirrorMode: sync');
    }
    if (policy !== undefined && policy !== 'block' && policy !== 'degrade') fail('mta.mirrorSyncPolicy', `must be block or degrade (got ${JSON.stringify(policy)})`);
    if (timeout !== undefined) {
      let ms = NaN;
      try {
        ms = typeof timeout === 'string' ? parseDuration(timeout) : NaN;
      } catch {
        // reported below
      }
      if (!(ms > 0)) fail('mta.mirrorSyncTimeout', `must be a duration such as '2s' or '500ms' (got ${JSON.stringify(timeout)})`);
    }
  } else {
    // A mirror setting without pairs would be silently ignored: say so instead.
    for (const key of ['mirrorPort', 'mirrorMode', 'mirrorSyncPolicy', 'mirrorSyncTimeout']) if (r.at(raw, `mta.${key}`) !== undefined) fail(`mta.${key}`, 'is only read with mta.ha: true');
  }
  const inbound = r.at(raw, 'mta.inbound') !== undefined;
  if (inbound) {
    mtaPorts.push(r.integer(raw, 'mta.inbound.port', 1, PORT_MAX));
    const domains = r.array(raw, 'mta.inbound.domains', 1).map((_, i) => r.string(raw, `mta.inbound.domains.${i}`, DNS_NAME, 'a lower-case domain name without trailing dot'));
    // A repeat is harmless to the listener but would make two MX records of one name in the Dns stack.
    if (new Set(domains).size !== domains.length) fail('mta.inbound.domains', 'must not repeat a domain');
  }
  if (new Set(mtaPorts).size !== mtaPorts.length) fail('mta', `smtpPorts, apiPort, adminPort, drainPort${ha ? ', mirrorPort' : ''}${inbound ? ', inbound.port' : ''} must all differ`);

  // proxy
  const proxyType = r.string(raw, 'proxy.instanceType');
  const perEni = IPV4_PER_ENI[proxyType];
  if (perEni === undefined) fail('proxy.instanceType', `must be one of ${knownInstanceTypes().join(', ')} (got "${proxyType}")`);
  r.integer(raw, 'proxy.port', 1, PORT_MAX);
  const seenIps = new Map<string, string>();
  const seenProxies = new Set<string>();
  r.array(raw, 'proxy.proxies', 1).forEach((_, i) => {
    const at = `proxy.proxies[${i}]`;
    const p = `proxy.proxies.${i}`;
    const name = r.string(raw, `${p}.name`, NAME, 'lower-case letters, digits and dashes');
    if (seenProxies.has(name)) fail(`${at}.name`, `repeats proxy "${name}"`);
    seenProxies.add(name);
    const az = r.string(raw, `${p}.availabilityZone`);
    const subnet = subnets?.find((s) => s.availabilityZone === az);
    if (!subnet) fail(`${at}.availabilityZone`, `must be one of availabilityZones (got "${az}")`);
    const publicCidr = parseCidr((subnet as { publicCidr: string }).publicCidr);
    const checkIp = (field: string, ip: string): void => {
      const value = parseIpv4(ip);
      if (value === undefined) fail(field, `must be an IPv4 address (got "${ip}")`);
      // AWS reserves the first four and the last address of every subnet.
      if (!publicCidr || !cidrContains(publicCidr, value as number) || (value as number) - publicCidr.base < 4 || (value as number) === publicCidr.base + 255) {
        fail(field, `must be a usable address of ${az}'s public subnet ${(subnet as { publicCidr: string }).publicCidr} (got ${ip})`);
      }
      const owner = seenIps.get(ip);
      if (owner) fail(field, `repeats ${ip}, already used by ${owner}`);
      seenIps.set(ip, field);
    };
    checkIp(`${at}.interfaceIp`, r.string(raw, `${p}.interfaceIp`));
    const sending = r.array(raw, `${p}.sendingIps`, 1);
    // The primary IP takes one of the ENI's slots.
    if (perEni !== undefined && sending.length > perEni - 1) {
      fail(`${at}.sendingIps`, `has ${sending.length} IPs but one ${proxyType} ENI holds at most ${perEni - 1} besides its primary IP`);
    }
    sending.forEach((_, j) => checkIp(`${at}.sendingIps[${j}]`, r.string(raw, `${p}.sendingIps.${j}`)));
  });

  // ingress
  r.boolean(raw, 'ingress.internetFacing');
  const apiListenerPort = r.integer(raw, 'ingress.apiListenerPort', 1, PORT_MAX);
  if (smtpPorts.includes(apiListenerPort)) fail('ingress.apiListenerPort', 'must differ from the SMTP ports');
  r.integer(raw, 'ingress.deregistrationDelaySeconds', 0, 3600);
  const lbs = r.array(raw, 'ingress.loadBalancers', 1);
  const lbNames = new Set<string>();
  let totalWeight = 0;
  lbs.forEach((_, i) => {
    const name = r.string(raw, `ingress.loadBalancers.${i}.name`, NAME, 'lower-case letters, digits and dashes');
    if (lbNames.has(name)) fail(`ingress.loadBalancers[${i}].name`, `repeats "${name}"`);
    lbNames.add(name);
    totalWeight += r.integer(raw, `ingress.loadBalancers.${i}.weight`, 0, 255);
  });
  if (totalWeight === 0) fail('ingress.loadBalancers', 'must give at least one load balancer a weight above 0 (all 0 means equal weights to Route 53)');

  // dns
  r.string(raw, 'dns.hostedZoneId', /^Z[A-Z0-9]{1,32}$/, 'a Route 53 hosted zone id (Z…)');
  const zone = r.string(raw, 'dns.zoneName', /^([a-z0-9-]+\.)+[a-z]{2,}$/, 'a domain name without trailing dot');
  for (const field of ['dns.smtpRecordName', 'dns.apiRecordName']) {
    const record = r.string(raw, field);
    if (!record.endsWith(`.${zone}`)) fail(field, `must be inside the zone ${zone} (got "${record}")`);
  }

  // storage
  const ia = r.integer(raw, 'storage.infrequentAccessAfterDays', 30, 3650); // S3 refuses IA before 30 days
  const glacier = r.integer(raw, 'storage.glacierAfterDays', 1, 3650);
  if (glacier <= ia) fail('storage.glacierAfterDays', `must be after infrequentAccessAfterDays (${ia})`);
  const expire = r.integer(raw, 'storage.expireAfterDays', 1, 36500);
  if (expire <= glacier) fail('storage.expireAfterDays', `must be after glacierAfterDays (${glacier})`);

  r.integer(raw, 'rollout.readyTimeoutMinutes', 5, 720);

  return raw as EnvironmentConfig;
}
