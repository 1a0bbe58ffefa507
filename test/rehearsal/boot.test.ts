// An MTA slot booted from what `cdk deploy` ships: its launch template's user
// data runs (runtime zip from the fake S3, install.sh, config sync from the
// fake SSM/S3, `systemctl start --no-block volley-bootstrap`), the bootstrap
// finds the slot's volume by tag, attaches it (a loop device), formats and
// mounts it, starts volley-mta.service (proxy-link files from the fake
// Secrets Manager first), waits for /readyz and signals the fake
// CloudFormation, all inside the instance's own mount namespace.
import { waitUntil } from '../helpers/proxy-fixtures';
import { type Rehearsal, startRehearsal } from './rehearsal';

let rehearsal: Rehearsal;
beforeAll(async () => {
  rehearsal = await startRehearsal();
}, 120_000);
afterAll(() => rehearsal?.close());

it('boots an MTA slot from its user data to /readyz and a SUCCESS signal, the volume mounted only inside the instance', async () => {
  const spec = rehearsal.assembly.instances.find((i) => i.role === 'mta');
  if (!spec) throw new Error('no MTA launch template');
  const instance = await rehearsal.boot(spec);
  expect(instance.userData).toMatchObject({ code: 0 });
  const signalled = () => rehearsal.aws.cloudFormation.signals.length > 0;
  const state = () => `signals ${JSON.stringify(rehearsal.aws.cloudFormation.signals)}\nbootstrap: ${instance.runner.status('volley-bootstrap.service').state}\n${instance.runner.journal('volley-bootstrap.service')}\nmta: ${instance.runner.journal('volley-mta.service')}`;
  await waitUntil(signalled, 110_000, state);
  if (rehearsal.aws.cloudFormation.signals[0]?.status !== 'SUCCESS') throw new Error(`the bootstrap signalled failure:\n${state()}`);
  expect(rehearsal.aws.cloudFormation.signals).toEqual([{ stack: spec.stack, resource: spec.instanceEnv.VOLLEY_SIGNAL_RESOURCE, uniqueId: rehearsal.aws.imds.metadata.instanceId, status: 'SUCCESS' }]);
  expect(instance.runner.status('volley-mta.service').state).toBe('active');
  // Mounted in the instance, not on the host.
  expect((await instance.exec(['mountpoint', '-q', '/var/lib/volley'])).code).toBe(0);
  expect((await rehearsal.netns.exec(['mountpoint', '-q', '/var/lib/volley'])).code).not.toBe(0);
  const ready = await instance.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:8025/readyz']);
  expect(ready.stdout).toBe('200');
}, 180_000);
