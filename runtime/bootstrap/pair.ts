// Boot of a node of an HA pair (an MTA slot with mta.ha): the node's own
// volume as any MTA slot's, plus its mirror interface (the fixed IP its peer
// dials), then the mirror rather than the MTA. The MTA runs on the primary
// only: it is started here when the mirror's durable state says this node is
// the primary (an instance replaced under a primary comes back serving), and
// otherwise by the mirror's promote_command when this node is promoted. The
// slot is ready for CloudFormation once the mirror answers (a secondary), or
// once the MTA does too (the primary).
import { pollUntil } from './clock';
import { BootstrapError } from './errors';
import { attachInterface, findSlotInterface, waitInterfaceAttachable } from './interface';
import { mountSlotVolume, reportFailure, signalReady, type BootstrapDeps, type MtaBootstrapOptions } from './mta';
import { waitForAddresses } from './proxy';
import { waitReady } from './ready';

export interface PairBootstrapOptions extends MtaBootstrapOptions {
  /** volley-mirror.service. */
  readonly mirrorUnit: string;
  /** The mirror's admin_listen as a URL (loopback): /healthz, then /status for the role. */
  readonly mirrorAdminUrl: string;
  readonly addressTimeoutMs: number;
  /** How long the mirror may take to answer /healthz after its start (its secrets are fetched first). */
  readonly mirrorTimeoutMs: number;
}

/** The role the local mirror holds now, from its /status (what `volley mirror status` prints). */
async function mirrorRole(deps: BootstrapDeps, adminUrl: string, timeoutMs: number): Promise<'primary' | 'secondary'> {
  let last = 'no answer';
  try {
    return await pollUntil(deps.clock, { timeoutMs, intervalMs: 2000, what: `${adminUrl}/status to name this node's role` }, async () => {
      try {
        const response = await fetch(`${adminUrl}/status`, { signal: AbortSignal.timeout(2000) });
        const body = (await response.json()) as { role?: unknown };
        last = `${response.status} role ${String(body.role)}`;
        return body.role === 'primary' || body.role === 'secondary' ? body.role : undefined;
      } catch (err) {
        last = `no answer (${(err as Error).message})`;
        return undefined;
      }
    });
  } catch (err) {
    throw new BootstrapError('ENOTREADY', `${(err as Error).message}; last answer: ${last}`);
  }
}

export async function bootstrapMtaPair(deps: BootstrapDeps, options: PairBootstrapOptions): Promise<void> {
  const { ec2, system, clock, log } = deps;
  try {
    const self = await deps.identity();
    log.info(`pair node ${options.slot} on ${self.instanceId} in ${self.availabilityZone}`);
    await mountSlotVolume(deps, options, self);

    const eni = await findSlotInterface(ec2, options.slot, self.availabilityZone);
    const state = await waitInterfaceAttachable(ec2, clock, log, eni.id, self.instanceId, options.releaseTimeoutMs);
    if (state === 'available') {
      log.info(`attaching mirror interface ${eni.id}`);
      await attachInterface(ec2, clock, eni.id, self.instanceId, options.attachTimeoutMs);
    }
    // The mirror listens on this address: it cannot bind it before the OS has configured it.
    await waitForAddresses(system, clock, eni.addresses, options.addressTimeoutMs);

    log.info(`starting ${options.mirrorUnit}`);
    await system.startUnit(options.mirrorUnit);
    await waitReady(clock, `${options.mirrorAdminUrl}/healthz`, options.mirrorTimeoutMs);
    const role = await mirrorRole(deps, options.mirrorAdminUrl, options.mirrorTimeoutMs);
    if (role === 'primary') {
      log.info(`the mirror says this node is the primary: starting ${options.unit}`);
      await system.startUnit(options.unit);
      await waitReady(clock, options.readyUrl, options.readyTimeoutMs);
      log.info(`${options.unit} is ready`);
    } else {
      // No MTA here: the mirror's promote_command starts it if this node is promoted.
      log.info(`the mirror says this node is the secondary: ${options.unit} stays stopped`);
    }
    await signalReady(system, log, `pair node ${options.slot} ready (${role})`);
  } catch (err) {
    await reportFailure(system, log, err as Error);
    throw err;
  }
}
