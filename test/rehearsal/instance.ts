// One rehearsed "instance": a private mount namespace (its own copy of /etc,
// its own /opt and /usr/local/bin, its volume on /var/lib/volley, the fake EC2's
// /dev/disk/by-id) inside the rehearsal's network namespace, its own unit
// runner and systemctl, and its user data run as cloud-init runs it (bash, as
// root). What install.sh, the units and the bootstrap write stays inside it;
// the host's /etc, /opt and /var/lib are never written.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { registerExitCleanup } from '../helpers/postfix-tools';
import { REPO_ROOT, type InstanceSpec } from './assembly';
import type { Netns } from './netns';
import { writeSudoTools } from './sudo';
import { startSystemctl, type SystemctlShim } from './systemctl';
import { UnitRunner } from './unit-runner';

/** Directories of the instance bound over the host's in its mount namespace (instance path -> subdirectory of its root). */
const BINDS: readonly [string, string][] = [
  ['/etc', 'etc'],
  ['/opt', 'opt'],
  ['/usr/local/bin', 'usr-local-bin'],
];
// /var/lib/volley is not bound: the host's empty directory is the mount point
// the bootstrap mounts the slot's volume on, inside the instance's namespace only.
// /usr/bin is the host's with an overlay (inside the namespace only) adding what the
// image has and this machine lacks or has dead: sudo and visudo (test/rehearsal/sudo.ts),
// and /usr/bin/systemctl as the runner's systemctl (the host's talks to no systemd):
// an HA pair's promote_command names both by absolute path.

export interface InstanceOptions {
  readonly name: string;
  readonly spec: InstanceSpec;
  /** The instance's own directory on the host (removed by close()). */
  readonly dir: string;
  readonly netns: Netns;
  /** The SDK's variables pointing at the fakes (this instance's IMDS among them): systemd's DefaultEnvironment=. */
  readonly awsEnv: Readonly<Record<string, string>>;
  /** The fake EC2's by-id directory: seen by the instance as /dev/disk/by-id. */
  readonly byIdDir: string;
}

export interface Instance {
  readonly name: string;
  readonly spec: InstanceSpec;
  readonly runner: UnitRunner;
  /** The user data's exit status and output (as cloud-init's log would hold them). */
  readonly userData: { code: number; stdout: string; stderr: string };
  /** The host path of a path as the instance sees it. */
  hostPath(path: string): string;
  /** Runs a command inside the instance (its mount and network namespaces). */
  exec(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

/** What the image provides that this machine does not: dnf (AL2023's packages are what node_modules holds here) and an `aws` that honours AWS_ENDPOINT_URL_S3 as AL2023's CLI v2 does. */
function writeImageTools(bin: string): void {
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'dnf'), '#!/bin/sh\n# The rehearsal: AL2023 packages (nodejs24, unzip) are this machine\'s Node 24 and unzip.\necho "dnf $*" >&2\n');
  const sdk = join(REPO_ROOT, 'node_modules/@aws-sdk/client-s3');
  writeFileSync(
    join(bin, 'aws'),
    `#!${process.execPath}
// The rehearsal's aws CLI: only \`aws s3 cp s3://BUCKET/KEY FILE\`, what CDK's S3 download in the user data runs.
const [service, verb, from, to] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const m = /^s3:\\/\\/([^/]+)\\/(.+)$/.exec(from || '');
if (service !== 's3' || verb !== 'cp' || !m || !to) { console.error('rehearsal aws: only "aws s3 cp s3://BUCKET/KEY FILE"'); process.exit(2); }
const { S3Client, GetObjectCommand } = require(${JSON.stringify(sdk)});
new S3Client({}).send(new GetObjectCommand({ Bucket: m[1], Key: m[2] }))
  .then(async (o) => require('node:fs').writeFileSync(to, Buffer.from(await o.Body.transformToByteArray())))
  .catch((e) => { console.error('rehearsal aws: ' + e.message); process.exit(1); });
`,
  );
  for (const name of ['dnf', 'aws']) chmodSync(join(bin, name), 0o755);
}

function sh(argv: string[]): void {
  try {
    execFileSync(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new VolleyError('EINSTANCE', `${argv.join(' ')} failed: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`);
  }
}

/** Boots one instance: mount namespace, runner, then the user data to its end (the bootstrap goes on in its unit). */
export async function bootInstance(options: InstanceOptions): Promise<Instance> {
  const { dir, netns } = options;
  const ns = join(dir, 'ns');
  const mnt = join(ns, 'mnt');
  let runner: UnitRunner | undefined;
  let shim: SystemctlShim | undefined;
  let closed = false;
  const unmountNs = (): void => {
    for (const target of [mnt, ns]) {
      try {
        execFileSync('umount', [target], { stdio: 'ignore' });
      } catch {
        // not mounted
      }
    }
  };
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    unregister();
    await runner?.close();
    await shim?.close();
    // The namespace (and the volume mounted in it) goes once no process holds it.
    unmountNs();
    rmSync(dir, { recursive: true, force: true });
    // The user data's download (CDK's S3 command writes it to /tmp, which the instance shares with the host).
    rmSync('/tmp/volley-runtime.zip', { force: true });
  };
  const unregister = registerExitCleanup(unmountNs);
  try {
    mkdirSync(ns, { recursive: true });
    for (const [, sub] of BINDS) mkdirSync(join(dir, sub), { recursive: true });
    cpSync('/etc', join(dir, 'etc'), { recursive: true, verbatimSymlinks: true });
    mkdirSync(join(dir, 'etc/systemd/system'), { recursive: true });
    // What the image's sudo package holds and this machine (no sudo) lacks: the drop-in directory install.sh writes to.
    mkdirSync(join(dir, 'etc/sudoers.d'), { recursive: true, mode: 0o750 });
    // Mount points on the host: empty directories, only ever mounted over inside instances.
    for (const point of ['/var/lib/volley', '/dev/disk/by-id']) mkdirSync(point, { recursive: true });
    mkdirSync(options.byIdDir, { recursive: true });
    // A persistent mount namespace needs its file on a private mount.
    sh(['mount', '--bind', ns, ns]);
    sh(['mount', '--make-private', ns]);
    writeFileSync(mnt, '');
    const shimDir = join(dir, 'shim');
    const usrBin = join(dir, 'usr-bin');
    mkdirSync(join(usrBin, 'upper'), { recursive: true });
    mkdirSync(join(usrBin, 'work'), { recursive: true });
    writeSudoTools(join(usrBin, 'upper'));
    // The shim is written below, once its socket listens: the link waits for it.
    symlinkSync(join(shimDir, 'bin', 'systemctl'), join(usrBin, 'upper', 'systemctl'));
    const binds = [
      ...BINDS.map(([target, sub]) => `mount --bind ${join(dir, sub)} ${target}`),
      `mount --bind ${options.byIdDir} /dev/disk/by-id`,
      `mount -t overlay overlay -o lowerdir=/usr/bin,upperdir=${join(usrBin, 'upper')},workdir=${join(usrBin, 'work')} /usr/bin`,
    ];
    sh(['unshare', `--mount=${mnt}`, '--propagation', 'private', 'sh', '-ec', binds.join('\n')]);

    const wrap = ['nsenter', `--mount=${mnt}`, `--net=/run/netns/${netns.name}`, '--'];
    const tools = join(dir, 'image-bin');
    writeImageTools(tools);
    const hostPath = (path: string): string => {
      const bind = BINDS.find(([target]) => path === target || path.startsWith(`${target}/`));
      return bind ? join(dir, bind[1], path.slice(bind[0].length)) : path;
    };
    // systemd's DefaultEnvironment=: the endpoints, and a PATH with the image's tools and Node 24.
    const path = `${shimDir}/bin:${tools}:${dirname(process.execPath)}:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;
    runner = new UnitRunner({ unitDirs: [hostPath('/etc/systemd/system')], environment: { ...options.awsEnv, PATH: path }, wrap, id: `${options.name}-${process.pid}`, hostPath });
    shim = await startSystemctl(runner, shimDir);
    if (`${shim.binDir}` !== `${shimDir}/bin`) throw new VolleyError('EINSTANCE', `the systemctl shim is in ${shim.binDir}, not ${shimDir}/bin`);

    const script = join(dir, 'user-data');
    writeFileSync(script, options.spec.userData, { mode: 0o700 });
    const userData = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(wrap[0] as string, [...wrap.slice(1), 'bash', script], { env: { ...options.awsEnv, PATH: path }, encoding: 'utf8' }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr }),
      );
    });
    const exec = (argv: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(wrap[0] as string, [...wrap.slice(1), ...argv], { env: { ...options.awsEnv, PATH: path }, encoding: 'utf8' }, (err, stdout, stderr) =>
          resolve({ code: err ? (typeof err.code === 'number' ? err.code : 127) : 0, stdout, stderr }),
        );
      });
    const started = runner;
    return { name: options.name, spec: options.spec, runner: started, userData, hostPath, exec, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** True when the instance's mount namespace still exists (for clean-up checks). */
export function mountNamespaceExists(dir: string): boolean {
  return existsSync(join(dir, 'ns', 'mnt'));
}
