// The fake instance metadata through the bootstrap's own reader
// (runtime/bootstrap/metadata.ts), and its IMDSv2-only rule.
import { readInstanceIdentity } from '../../../runtime/bootstrap/metadata';
import { serve, type Endpoint } from './http';
import { FakeImds } from './imds';

const imds = new FakeImds({ instanceId: 'i-0rehearsal000001', availabilityZone: 'eu-west-1a', region: 'eu-west-1', localIpv4: '10.0.1.10', roleName: 'volley-mta' });
let endpoint: Endpoint;
beforeAll(async () => {
  endpoint = await serve(imds.handler);
});
afterAll(() => endpoint.close());

it('serves the identity the bootstrap reads, with a token', async () => {
  await expect(readInstanceIdentity(`${endpoint.url}/latest`)).resolves.toEqual({ instanceId: 'i-0rehearsal000001', availabilityZone: 'eu-west-1a', region: 'eu-west-1' });
  expect(imds.requests[0]).toBe('PUT api/token');
});

it('refuses a read without a token (IMDSv1), and a token request without a TTL', async () => {
  expect((await fetch(`${endpoint.url}/latest/meta-data/instance-id`)).status).toBe(401);
  expect((await fetch(`${endpoint.url}/latest/api/token`, { method: 'PUT' })).status).toBe(400);
});
