// The bootstrap reads the instance's identity where the SDK reads its
// credentials: AWS_EC2_METADATA_SERVICE_ENDPOINT when set, so both describe
// the same instance (on EC2 the variable is unset: 169.254.169.254).
import { imdsBase, readInstanceIdentity } from '../../../runtime/bootstrap/metadata';
import { type Endpoint, serve } from '../../rehearsal/fake-aws/http';
import { FakeImds } from '../../rehearsal/fake-aws/imds';

const imds = new FakeImds({ instanceId: 'i-0metadata00000001', availabilityZone: 'eu-west-1b', region: 'eu-west-1', localIpv4: '10.0.2.10', roleName: 'volley-mta' });
let endpoint: Endpoint;
const saved = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
beforeAll(async () => {
  endpoint = await serve(imds.handler);
});
afterAll(async () => {
  if (saved === undefined) delete process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
  else process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = saved;
  await endpoint.close();
});

it('reads the identity from AWS_EC2_METADATA_SERVICE_ENDPOINT, as the SDK reads credentials', async () => {
  process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT = `${endpoint.url}/`;
  await expect(readInstanceIdentity()).resolves.toEqual({ instanceId: 'i-0metadata00000001', availabilityZone: 'eu-west-1b', region: 'eu-west-1' });
  expect(imds.requests[0]).toBe('PUT api/token');
});

it('uses the link-local address when the variable is unset or blank', () => {
  expect(imdsBase({})).toBe('http://169.254.169.254/latest');
  expect(imdsBase({ AWS_EC2_METADATA_SERVICE_ENDPOINT: ' ' })).toBe('http://169.254.169.254/latest');
  expect(imdsBase({ AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://[fd00:ec2::254]' })).toBe('http://[fd00:ec2::254]/latest');
});
