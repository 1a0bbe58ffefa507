import type { Clock } from './clock';
import { pollUntil } from './clock';
import { attachInterface, findSlotInterface, waitInterfaceAttachable } from './interface';
import { BootstrapDeps, reportFailure, signalReady } from './mta';
import { waitReady } from './ready';
import type { BootstrapSystem } from './system';

export interface ProxyBootstrapOptions {
  readonly slot: string;
  readonly unit: string;
  /** The proxy's /readyz (its admin_listen); ready once it listens and can bind every sending IP. */
  readonly readyUrl: string;
  readonly releaseTimeoutMs: number;
  readonly attachTimeoutMs: number;
  /** The OS (amazon-ec2-net-utils) configures the ENI's addresses after attach. */
  readonly addressTimeoutMs: number;
  readonly readyTimeoutMs: number;
}


/** Waits until the host has every one of `addresses` (the OS configures an attached ENI's addresses on its own). */
export async function waitForAddresses(system: BootstrapSystem, clock: Clock, addresses: readonly string[], timeoutMs: number): Promise<void> {
  await pollUntil(clock, { timeoutMs, intervalMs: 1000, what: `addresses ${addresses.join(', ')} to be configured on this host` }, async () => {
    const local = new Set(await system.localAddresses());
    return addresses.every((a) => local.has(a)) ? true : undefined;
  });
}

/**
 * Boot of a proxy slot: reattach the standalone ENI that carries the sending
 * IPs, wait until the host has every address (a proxy binding a missing IP
 * would fail its first delivery), start the proxy, wait for its /readyz,
 * tell CloudFormation.
 */
export async function bootstrapProxy(deps: BootstrapDeps, options: ProxyBootstrapOptions): Promise<void> {
  const { ec2, system, clock, log } = deps;
  try {
    const self = await deps.identity();
    log.info(`slot ${options.slot} on ${self.instanceId} in ${self.availabilityZone}`);
    const eni = await findSlotInterface(ec2, options.slot, self.availabilityZone);
    const state = await waitInterfaceAttachable(ec2, clock, log, eni.id, self.instanceId, options.releaseTimeoutMs);
    if (state === 'available') {
      log.info(`attaching ${eni.id}`);
      await attachInterface(ec2, clock, eni.id, self.instanceId, options.attachTimeoutMs);
    }
    await waitForAddresses(system, clock, eni.addresses, options.addressTimeoutMs);
    log.info(`starting ${options.unit}`);
    await system.startUnit(options.unit);
    log.info(`waiting for ${options.readyUrl}`);
    await waitReady(clock, options.readyUrl, options.readyTimeoutMs);
    await signalReady(system, log, `slot ${options.slot} ready`);
  } catch (err) {
    await reportFailure(system, log, err as Error);
    throw err;
  }
}
