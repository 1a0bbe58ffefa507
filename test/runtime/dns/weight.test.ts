import { ChangeResourceRecordSetsCommand, GetChangeCommand, ListResourceRecordSetsCommand, ResourceRecordSet, Route53Client } from '@aws-sdk/client-route-53';
import { mockClient } from 'aws-sdk-client-mock';
import { setWeight } from '../../../runtime/dns';

const ZONE = 'Z0PROD00000000000001';
const r53 = mockClient(Route53Client);

function alias(name: string, lb: string, weight: number): ResourceRecordSet {
  return {
    Name: name,
    Type: 'A',
    SetIdentifier: lb,
    Weight: weight,
    AliasTarget: { HostedZoneId: 'Z26RNL4JYFTOTI', DNSName: `${lb}-123.elb.us-east-1.amazonaws.com.`, EvaluateTargetHealth: true },
  };
}

const zone: ResourceRecordSet[] = [
  { Name: 'mail.example.com.', Type: 'NS', TTL: 172800, ResourceRecords: [{ Value: 'ns-1.awsdns-00.com.' }] },
  alias('api.mail.example.com.', 'nlb-a', 50),
  alias('api.mail.example.com.', 'nlb-b', 50),
  alias('smtp.mail.example.com.', 'nlb-a', 50),
  alias('smtp.mail.example.com.', 'nlb-b', 50),
];

beforeEach(() => {
  r53.reset();
  // Two pages, so the listing must follow the pagination markers.
  r53.on(ListResourceRecordSetsCommand).callsFake((input) =>
    input.StartRecordName === undefined
      ? { ResourceRecordSets: zone.slice(0, 3), IsTruncated: true, NextRecordName: 'smtp.mail.example.com.', NextRecordType: 'A', NextRecordIdentifier: 'nlb-a' }
      : { ResourceRecordSets: zone.slice(3), IsTruncated: false },
  );
  r53.on(ChangeResourceRecordSetsCommand).resolves({ ChangeInfo: { Id: '/change/C1', Status: 'PENDING', SubmittedAt: new Date() } });
  r53.on(GetChangeCommand).resolvesOnce({ ChangeInfo: { Id: '/change/C1', Status: 'PENDING', SubmittedAt: new Date() } }).resolves({ ChangeInfo: { Id: '/change/C1', Status: 'INSYNC', SubmittedAt: new Date() } });
});

const noSleep = async (): Promise<void> => undefined;

test('weight 0 takes one load balancer out of rotation on every name, keeping alias target and health evaluation', async () => {
  const result = await setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-a', weight: 0, waitMs: 60_000 }, noSleep);

  const calls = r53.commandCalls(ChangeResourceRecordSetsCommand);
  expect(calls).toHaveLength(1);
  const changes = calls[0]?.args[0].input.ChangeBatch?.Changes ?? [];
  expect(changes).toEqual([
    { Action: 'UPSERT', ResourceRecordSet: { ...alias('api.mail.example.com.', 'nlb-a', 0) } },
    { Action: 'UPSERT', ResourceRecordSet: { ...alias('smtp.mail.example.com.', 'nlb-a', 0) } },
  ]);
  expect(result.changes.map((c) => `${c.name} ${c.from}->${c.to}`)).toEqual(['api.mail.example.com. 50->0', 'smtp.mail.example.com. 50->0']);
  expect(result.insync).toBe(true);
  expect(r53.commandCalls(GetChangeCommand)).toHaveLength(2);
});

test('--name limits the change to one record name', async () => {
  await setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-b', weight: 10, names: ['smtp.mail.example.com'] }, noSleep);
  const changes = r53.commandCalls(ChangeResourceRecordSetsCommand)[0]?.args[0].input.ChangeBatch?.Changes ?? [];
  expect(changes.map((c) => `${c.ResourceRecordSet?.Name} ${c.ResourceRecordSet?.SetIdentifier} ${c.ResourceRecordSet?.Weight}`)).toEqual(['smtp.mail.example.com. nlb-b 10']);
});

test('refuses to leave a name with all weights at 0 (Route 53 would spread traffic evenly again) unless forced', async () => {
  zone[2] = alias('api.mail.example.com.', 'nlb-b', 0);
  try {
    await expect(setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-a', weight: 0 }, noSleep)).rejects.toMatchObject({ code: 'EALLZERO' });
    expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toHaveLength(0);
    await setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-a', weight: 0, force: true }, noSleep);
    expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toHaveLength(1);
  } finally {
    zone[2] = alias('api.mail.example.com.', 'nlb-b', 50);
  }
});

test('an unknown load balancer is an error, not a silent no-op', async () => {
  await expect(setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-z', weight: 0 }, noSleep)).rejects.toMatchObject({ code: 'ENORECORD' });
  expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toHaveLength(0);
});

test('putting it back: weight already right sends no change', async () => {
  const result = await setWeight(new Route53Client({}), { zoneId: ZONE, setIdentifier: 'nlb-a', weight: 50 }, noSleep);
  expect(result.changes).toEqual([]);
  expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toHaveLength(0);
});
