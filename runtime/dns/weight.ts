import {
  ChangeResourceRecordSetsCommand,
  GetChangeCommand,
  ListResourceRecordSetsCommand,
  ListResourceRecordSetsCommandOutput,
  ResourceRecordSet,
  Route53Client,
} from '@aws-sdk/client-route-53';

export class DnsWeightError extends Error {
  constructor(
    readonly code: 'ENORECORD' | 'EALLZERO' | 'EBADWEIGHT' | 'ETIMEOUT',
    message: string,
  ) {
    super(message);
    this.name = 'DnsWeightError';
  }
}

export interface WeightRequest {
  readonly zoneId: string;
  /** The load balancer's name, which is the records' set identifier. */
  readonly setIdentifier: string;
  readonly weight: number;
  /** Limit to these record names; default every weighted record of the load balancer. */
  readonly names?: readonly string[];
  /** Allow leaving a name with every weight at 0 (Route 53 then spreads traffic evenly over all). */
  readonly force?: boolean;
  /** Wait until Route 53 reports the change INSYNC on its servers. */
  readonly waitMs?: number;
}

export interface WeightChange {
  readonly name: string;
  readonly type: string;
  readonly from: number;
  readonly to: number;
}

export interface WeightResult {
  readonly changes: WeightChange[];
  readonly changeId?: string;
  readonly insync: boolean;
}

const fqdn = (name: string): string => (name.endsWith('.') ? name : `${name}.`).toLowerCase();

async function listAll(route53: Route53Client, zoneId: string): Promise<ResourceRecordSet[]> {
  const records: ResourceRecordSet[] = [];
  let next: Pick<ListResourceRecordSetsCommandOutput, 'NextRecordName' | 'NextRecordType' | 'NextRecordIdentifier'> = {};
  for (;;) {
    const page = await route53.send(
      new ListResourceRecordSetsCommand({
        HostedZoneId: zoneId,
        StartRecordName: next.NextRecordName,
        StartRecordType: next.NextRecordType,
        StartRecordIdentifier: next.NextRecordIdentifier,
      }),
    );
    records.push(...(page.ResourceRecordSets ?? []));
    if (!page.IsTruncated) return records;
    next = page;
  }
}

/**
 * Sets the weight of one load balancer's weighted records: 0 takes it out of
 * rotation (its NLB can then be drained or replaced), a positive weight puts
 * it back. Refuses a change that would leave a name with every weight at 0,
 * because Route 53 treats all-zero as equal weights and would send traffic
 * back to the load balancer being taken out.
 */
export async function setWeight(
  route53: Route53Client,
  request: WeightRequest,
  sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
): Promise<WeightResult> {
  if (!Number.isInteger(request.weight) || request.weight < 0 || request.weight > 255) {
    throw new DnsWeightError('EBADWEIGHT', `weight must be a whole number from 0 to 255 (got ${request.weight})`);
  }
  const wanted = request.names?.map(fqdn);
  const all = (await listAll(route53, request.zoneId)).filter((r) => r.Weight !== undefined);
  const mine = all.filter((r) => r.SetIdentifier === request.setIdentifier && (!wanted || wanted.includes(fqdn(r.Name ?? ''))));
  if (mine.length === 0) {
    throw new DnsWeightError(
      'ENORECORD',
      `no weighted record with set identifier "${request.setIdentifier}"${wanted ? ` named ${wanted.join(', ')}` : ''} in zone ${request.zoneId}`,
    );
  }

  if (!request.force) {
    for (const record of mine) {
      const siblings = all.filter((r) => fqdn(r.Name ?? '') === fqdn(record.Name ?? '') && r.Type === record.Type);
      const after = siblings.reduce((sum, r) => sum + (r === record ? request.weight : (r.Weight ?? 0)), 0);
      if (after === 0) {
        throw new DnsWeightError(
          'EALLZERO',
          `${record.Name} ${record.Type} would have every weight at 0, which Route 53 treats as equal weights (traffic would return to "${request.setIdentifier}"); put another load balancer in rotation first, or pass --force`,
        );
      }
    }
  }

  const changes = mine.filter((r) => r.Weight !== request.weight);
  if (changes.length === 0) {
    return { changes: [], insync: true };
  }
  const response = await route53.send(
    new ChangeResourceRecordSetsCommand({
      HostedZoneId: request.zoneId,
      ChangeBatch: {
        Comment: `volley dns weight ${request.setIdentifier} ${request.weight}`,
        // UPSERT of the record exactly as it is, weight aside: alias target and health evaluation stay.
        Changes: changes.map((r) => ({ Action: 'UPSERT', ResourceRecordSet: { ...r, Weight: request.weight } })),
      },
    }),
  );
  const changeId = response.ChangeInfo?.Id;
  let insync = response.ChangeInfo?.Status === 'INSYNC';
  if (request.waitMs && changeId && !insync) {
    const deadline = Date.now() + request.waitMs;
    while (!insync) {
      if (Date.now() >= deadline) throw new DnsWeightError('ETIMEOUT', `change ${changeId} was not INSYNC after ${request.waitMs / 1000} s (it will still apply)`);
      await sleep(2000);
      insync = (await route53.send(new GetChangeCommand({ Id: changeId }))).ChangeInfo?.Status === 'INSYNC';
    }
  }
  return {
    changes: changes.map((r) => ({ name: r.Name ?? '', type: r.Type ?? '', from: r.Weight ?? 0, to: request.weight })),
    changeId,
    insync,
  };
}

/** The weighted records of a zone, for `volley dns weights`. */
export async function listWeights(route53: Route53Client, zoneId: string): Promise<{ name: string; type: string; setIdentifier: string; weight: number }[]> {
  return (await listAll(route53, zoneId))
    .filter((r) => r.Weight !== undefined)
    .map((r) => ({ name: r.Name ?? '', type: r.Type ?? '', setIdentifier: r.SetIdentifier ?? '', weight: r.Weight ?? 0 }));
}
