import type { EC2Client } from '@aws-sdk/client-ec2';
import type { Clock } from './clock';
import { BootstrapError } from './errors';
import type { InstanceIdentity } from './metadata';
import { mountPersistentPath, waitForDevice } from './persistent-path';
import { waitReady } from './ready';
import type { BootstrapSystem, Log } from './system';
import { attachVolume, findSlotVolume, nvmeDevicePath, waitAttachable } from './volume';

export interface MtaBootstrapOptions {
  readonly slot: string;
  readonly persistentPath: string;
  readonly unit: string;
  readonly readyUrl: string;
  /** How long the previous instance may keep the volume while it shuts down. */
  readonly releaseTimeoutMs: number;
  readonly attachTimeoutMs: number;
  readonly deviceTimeoutMs: number;
  /** Includes spool recovery, which can take minutes with a large queue. */
  readonly readyTimeoutMs: number;
  readonly byIdDir: string;
}


export interface BootstrapDeps {
  readonly ec2: EC2Client;
  readonly system: BootstrapSystem;
  readonly clock: Clock;
  readonly log: Log;
  readonly identity: () => Promise<InstanceIdentity>;
}

/**
 * Boot of an MTA slot: find the slot's volume, wait for the previous instance
 * to let go of it, attach, mount (formatting only a blank volume), start the
 * MTA, wait until it is ready, tell CloudFormation. Any failure is signalled
 * and rethrown, so the process exits non-zero and the slot is replaced (a
 * ready signal CloudFormation refuses is not one: see signalReady).
 */
export async function bootstrapMta(deps: BootstrapDeps, options: MtaBootstrapOptions): Promise<void> {
  const { system, clock, log } = deps;
  try {
    const self = await deps.identity();
    log.info(`slot ${options.slot} on ${self.instanceId} in ${self.availabilityZone}`);
    await mountSlotVolume(deps, options, self);
    log.info(`starting ${options.unit}`);
    await system.startUnit(options.unit);
    await waitReady(clock, options.readyUrl, options.readyTimeoutMs);
    log.info(`${options.unit} is ready`);
    await signalReady(system, log, `slot ${options.slot} ready`);
  } catch (err) {
    await reportFailure(system, log, err as Error);
    throw err;
  }
}

/** Finds the slot's volume, waits for the previous instance to let go of it, attaches and mounts it (formatting only a blank one). */
export async function mountSlotVolume(deps: BootstrapDeps, options: MtaBootstrapOptions, self: InstanceIdentity): Promise<void> {
  const { ec2, system, clock, log } = deps;
  const volumeId = await findSlotVolume(ec2, options.slot, self.availabilityZone);
  const state = await waitAttachable(ec2, clock, log, volumeId, self.instanceId, options.releaseTimeoutMs);
  if (state === 'available') {
    log.info(`attaching ${volumeId}`);
    await attachVolume(ec2, clock, volumeId, self.instanceId, options.attachTimeoutMs);
  }
  const device = await waitForDevice(system, clock, nvmeDevicePath(volumeId, options.byIdDir), options.deviceTimeoutMs);
  await mountPersistentPath(system, log, device, options.persistentPath);
}

/**
 * Tells CloudFormation the slot is ready. It waits for that signal only while
 * it creates or updates the slot's group: at any other boot (a reboot, an
 * instance the group replaced after a failed health check) it refuses it
 * ("... is in UPDATE_COMPLETE state and cannot be signaled"). The daemon is
 * serving either way, so that refusal (ENOTWAITING) is logged, never a failed
 * boot: that would power the instance off (the unit's FailureAction), and
 * the group's next instance the same way, for ever. Any other failure to
 * signal fails the boot: a deploy may be waiting for that signal. The system's
 * signal has already tried a passing failure (throttling, a timeout, no
 * credentials yet) again for up to two minutes (SIGNAL_RETRY_BOUND_MS), so
 * what fails the boot here is a refusal or a failure that outlasted that.
 */
export async function signalReady(system: BootstrapSystem, log: Log, reason: string): Promise<void> {
  try {
    await system.signal(true, reason);
  } catch (err) {
    // Only that refusal: any other failure (credentials, throttling, AccessDenied, a timeout) may be a signal a
    // deploy is waiting for, and a boot that ends well would leave it waiting out its timeout to roll back.
    if (!(err instanceof BootstrapError && err.code === 'ENOTWAITING')) throw err;
    log.error(`${reason}, but CloudFormation did not take the signal (outside a deploy it waits for none; the daemon keeps running): ${err.message}`);
  }
}

export async function reportFailure(system: BootstrapSystem, log: Log, err: Error): Promise<void> {
  log.error(err.message);
  // Best effort: the non-zero exit still stops the instance if the signal cannot be sent.
  await system.signal(false, err.message).catch((signalErr: Error) => log.error(`cfn-signal failed too: ${signalErr.message}`));
}
