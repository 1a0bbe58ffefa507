// The fake CloudFormation records SignalResource, sent as the query-protocol
// request the CloudFormation client and cfn-signal send.
import { FakeCloudFormation } from './cloudformation';
import { serve, type Endpoint } from './http';
import { signedRequest } from './signed-request';
import { useEnv } from './env-for-test';

const cfn = new FakeCloudFormation();
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(cfn.handler);
});
useEnv(() => ({ AWS_ENDPOINT_URL_CLOUDFORMATION: endpoint.url }));
afterAll(() => endpoint.close());

const signal = (fields: Record<string, string>) =>
  signedRequest({
    service: 'cloudformation',
    endpointVariable: 'CLOUDFORMATION',
    region: 'eu-west-1',
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: new URLSearchParams({ Action: 'SignalResource', Version: '2010-05-15', ...fields }).toString(),
  });

it('records each signal, and rejects one without a valid Status', async () => {
  const ok = await signal({ StackName: 'volley-dev-mta', LogicalResourceId: 'MtaGroup1', UniqueId: 'i-0rehearsal000001', Status: 'SUCCESS' });
  expect(ok.status).toBe(200);
  const bad = await signal({ StackName: 'volley-dev-mta', LogicalResourceId: 'MtaGroup1', UniqueId: 'i-0rehearsal000001', Status: 'MAYBE' });
  expect(bad.status).toBe(400);
  expect(bad.text).toContain('ValidationError');
  expect(cfn.signals).toEqual([{ stack: 'volley-dev-mta', resource: 'MtaGroup1', uniqueId: 'i-0rehearsal000001', status: 'SUCCESS' }]);
});
