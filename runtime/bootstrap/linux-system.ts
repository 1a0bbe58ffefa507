import { CloudFormationClient, SignalResourceCommand } from '@aws-sdk/client-cloudformation';
import { execFile } from 'node:child_process';
import { access, mkdir, open, realpath } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { type Clock, realClock } from './clock';
import { BootstrapError } from './errors';
import { findExt4Backup } from './ext4-backup';
import type { BootstrapSystem, Probe } from './system';

interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') {
        reject(new Error(`${command}: ${err.message}`)); // not started at all (ENOENT, ...)
        return;
      }
      resolve({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

async function runOk(command: string, args: readonly string[], code: 'EFILESYSTEM' | 'EMOUNT' | 'EBADSTATE'): Promise<string> {
  const result = await run(command, args);
  if (result.code !== 0) throw new BootstrapError(code, `${command} ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}`);
  return result.stdout;
}

/**
 * How much of a volume must read as zeros for it to count as blank: a new EBS
 * volume reads zeros throughout, and every filesystem keeps metadata (ext4
 * its group descriptors, right after the superblock) in its first MiB.
 */
export const BLANK_CHECK_BYTES = 1024 * 1024;

/** Whether the device's first BLANK_CHECK_BYTES are all zero; a device that cannot be read is an error, never blank. */
async function leadingBytesAreZero(device: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(device, 'r');
    const buffer = Buffer.alloc(BLANK_CHECK_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead).every((byte) => byte === 0);
  } catch (err) {
    throw new BootstrapError('EFILESYSTEM', `cannot read ${device} to check it is blank: ${(err as Error).message}`);
  } finally {
    await handle?.close();
  }
}

/**
 * CloudFormation's answer to a signal while it creates or updates nothing
 * that waits for one: a ValidationError saying the stack or resource "is in
 * UPDATE_COMPLETE state and cannot be signaled". Every other failure
 * (credentials, throttling, AccessDenied, a network timeout) may be one a
 * deploy is waiting on.
 */
function notWaitingForSignals(err: Error): boolean {
  return err.name === 'ValidationError' && /cannot be signaled|is in [A-Z_]+ state/.test(err.message);
}

export interface SignalTarget {
  readonly stack: string;
  readonly resource: string;
  readonly region: string;
  /** This instance's id: the signal's UniqueId, as CloudFormation asks for an Auto Scaling group. */
  readonly instanceId: string;
}

/** The one CloudFormation call the bootstrap makes (a client, or a mock of one in tests). */
export type SignalClient = Pick<CloudFormationClient, 'send'>;

export interface LinuxSystemOptions {
  /** Where to signal; without it the bootstrap runs outside CloudFormation (by hand, in tests). */
  readonly signal?: SignalTarget;
  readonly cloudFormation?: SignalClient;
  /** Times the signal's retries (tests pass one whose sleep only moves its now). */
  readonly clock?: Clock;
}

/**
 * How long a ready (or failure) signal is retried when it fails in a way that
 * may pass (throttling after the SDK's own retries, a timeout, credentials
 * instance metadata could not give yet, a 5xx). Giving up fails the boot, and
 * the unit's FailureAction powers the instance off: outside a deploy (a
 * reboot, a health replacement) that is a serving instance lost to a passing
 * error. Two minutes is well inside the groups' signal timeout
 * (ResourceSignal, minutes), so a deploy still hears from the instance.
 */
export const SIGNAL_RETRY_BOUND_MS = 120_000;
/** The waits between attempts: doubling from 2 s, at most 30 s apart. */
export const SIGNAL_RETRY_FIRST_WAIT_MS = 2_000;
export const SIGNAL_RETRY_MAX_WAIT_MS = 30_000;

// Error names (the service's error code) that say: try again later.
const TRANSIENT_NAMES = new Set([
  'CredentialsProviderError',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
  'ServiceUnavailable',
  'InternalFailure',
  'InternalError',
]);
// No answer at all: the network (or the endpoint) may come back.
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/**
 * A signal failure that may pass if tried again. Everything else (AccessDenied,
 * a ValidationError such as a stack that does not exist, any other refusal)
 * fails at once: waiting would only delay the same answer.
 */
export function signalMayPass(err: Error): boolean {
  if (TRANSIENT_NAMES.has(err.name)) return true;
  const e = err as Error & { code?: string; $fault?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (e.$retryable) return true;
  if (e.$fault === 'server' || (e.$metadata?.httpStatusCode ?? 0) >= 500) return true;
  return e.code !== undefined && NETWORK_CODES.has(e.code);
}

/**
 * The real host: blkid, mkfs.ext4, findmnt, mount, systemctl, and
 * CloudFormation's SignalResource through the SDK (not cfn-signal, which
 * ignores AWS_ENDPOINT_URL_CLOUDFORMATION and needs aws-cfn-bootstrap on the image).
 */
export class LinuxSystem implements BootstrapSystem {
  constructor(private readonly options: LinuxSystemOptions = {}) {}

  async exists(path: string): Promise<boolean> {
    return access(path).then(
      () => true,
      () => false,
    );
  }

  realpath(path: string): Promise<string> {
    return realpath(path);
  }

  async probe(device: string): Promise<Probe> {
    // -p probes the device itself (no cache): a stale cache must never make a full volume look blank.
    const result = await run('blkid', ['-p', '-o', 'export', device]);
    // blkid: nothing found. Not proof of a blank volume: an ext4 whose primary superblock is damaged has no
    // signature either (e2fsck -b repairs it from a backup), and blkid says the same of a device it cannot read.
    // Nor is data in the first MiB proof of a filesystem: mke2fs writes there long before its superblocks (the
    // backups, then the primary, are its last writes), so a first format interrupted leaves data and no superblock.
    if (result.code === 2) {
      if (await leadingBytesAreZero(device)) return { blank: true };
      const ext4Backup = await findExt4Backup(device);
      return ext4Backup ? { blank: false, ext4Backup } : { blank: true, unfinished: true };
    }
    if (result.code !== 0) throw new BootstrapError('EFILESYSTEM', `blkid ${device} failed (${result.code}): ${result.stderr.trim()}`);
    const fields = new Map(
      result.stdout
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
    );
    return { blank: false, type: fields.get('TYPE'), partitionTable: fields.get('PTTYPE') };
  }

  async makeFilesystem(device: string, label: string): Promise<void> {
    // -m 0: a data volume needs no blocks reserved for root.
    await runOk('mkfs.ext4', ['-q', '-m', '0', '-L', label, device], 'EFILESYSTEM');
  }

  async mountedSource(mountPoint: string): Promise<string | undefined> {
    const result = await run('findmnt', ['-n', '-o', 'SOURCE', '--mountpoint', mountPoint]);
    if (result.code !== 0) return undefined;
    return result.stdout.trim() || undefined;
  }

  async mount(device: string, mountPoint: string): Promise<void> {
    await mkdir(mountPoint, { recursive: true });
    await runOk('mount', ['-o', 'noatime', device, mountPoint], 'EMOUNT');
  }

  async startUnit(unit: string): Promise<void> {
    await runOk('systemctl', ['start', unit], 'EBADSTATE');
  }

  async localAddresses(): Promise<string[]> {
    return Object.values(networkInterfaces())
      .flatMap((list) => list ?? [])
      .filter((address) => address.family === 'IPv4')
      .map((address) => address.address);
  }

  /**
   * SignalResource carries no reason (cfn-signal's --reason only reaches wait
   * conditions): the bootstrap logs it. A failure that may pass is tried again
   * with backoff for up to SIGNAL_RETRY_BOUND_MS; CloudFormation's "cannot be
   * signaled" is ENOTWAITING, any other failure ESIGNAL.
   */
  async signal(success: boolean, _reason: string): Promise<void> {
    const target = this.options.signal;
    if (!target) return;
    const clock = this.options.clock ?? realClock;
    const deadline = clock.now() + SIGNAL_RETRY_BOUND_MS;
    let wait = SIGNAL_RETRY_FIRST_WAIT_MS;
    for (let attempt = 1; ; attempt++) {
      // A new client each attempt: its credential provider tries instance metadata again.
      const client = this.options.cloudFormation ?? new CloudFormationClient({ region: target.region });
      try {
        await client.send(
          new SignalResourceCommand({ StackName: target.stack, LogicalResourceId: target.resource, UniqueId: target.instanceId, Status: success ? 'SUCCESS' : 'FAILURE' }),
        );
        return;
      } catch (err) {
        if (notWaitingForSignals(err as Error)) throw new BootstrapError('ENOTWAITING', `CloudFormation waits for no signal from ${target.stack}/${target.resource}: ${(err as Error).message}`);
        const left = deadline - clock.now();
        if (!signalMayPass(err as Error) || left <= 0) {
          const tried = attempt > 1 ? ` (${attempt} attempts over ${Math.round((SIGNAL_RETRY_BOUND_MS - left) / 1000)} s)` : '';
          throw new BootstrapError('ESIGNAL', `cannot signal ${target.stack}/${target.resource}${tried}: ${(err as Error).message}`);
        }
        await clock.sleep(Math.min(wait, left));
        wait = Math.min(wait * 2, SIGNAL_RETRY_MAX_WAIT_MS);
      }
    }
  }
}
