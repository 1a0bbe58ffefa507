// The MTA routing through a DNSSEC-validating resolver (unbound in front of a
// bind9 zone signed by dnssec-signzone, test/helpers/dnssec.ts): what DANE
// deployments configure as `resolver.servers`. Signed and unsigned
// destinations deliver as with any resolver; an MX host whose address record
// was forged after signing is never connected to: the resolver answers
// SERVFAIL and the mail is deferred. The MX hosts listen on port 25 of their
// own loopback addresses (MX records carry no port; root, as CI runs).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { startDnssec, type DnssecWorld } from '../../../../helpers/dnssec';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';
import { attemptsFor } from '../../../../helpers/attempt-log';

const dir = tempDir();
const signedMx = new ScriptedMx({ address: '127.0.19.1' });
const unsignedMx = new ScriptedMx({ address: '127.0.19.2' });
// Where the forged A record points: it must never see a connection.
const forgedTarget = new ScriptedMx({ address: '127.0.19.3' });
let world: DnssecWorld;
let mta: MtaProcess;

beforeAll(async () => {
  await Promise.all([signedMx.listen(25), unsignedMx.listen(25), forgedTarget.listen(25)]);
  world = await startDnssec({
    signed: ['@ MX 10 mx', 'mx A 127.0.19.1', 'forged MX 10 mx-forged'],
    bogus: [{ signed: 'mx-forged A 127.0.19.1', served: 'mx-forged A 127.0.19.3' }],
    insecure: ['@ MX 10 mx', 'mx A 127.0.19.2'],
  });
  const config = join(dir, 'volley.yaml');
  writeFileSync(config, deliveryConfigYaml(`resolver: { servers: ["${world.resolver}"] }\ndelivery: { retry: [1h] }\n`));
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
});
afterAll(async () => {
  await mta?.stop();
  await Promise.all([signedMx.close(), unsignedMx.close(), forgedTarget.close()]);
});

interface Attempt {
  message_id: string;
  status: string;
  mx_host?: string;
  mx_ip?: string;
  error_kind?: string;
  smtp_text?: string;
}

async function finalEvent(id: string): Promise<Attempt> {
  const events = await attemptsFor<Attempt>(join(dir, 'pp', 'log', 'events'), id, 20_000);
  return events[0];
}

const send = (to: string): Promise<string> => inject(mta.smtpPort, 'a@shop.example', [to], message('dnssec'));

test('a signed destination is delivered to its validated MX', async () => {
  const id = await send('user@dane.test');
  await signedMx.waitFor(1);
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.dane.test', mx_ip: '127.0.19.1' });
});

test('an unsigned destination is delivered as with any resolver', async () => {
  const id = await send('user@insecure.dane.test');
  await unsignedMx.waitFor(1);
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx.insecure.dane.test', mx_ip: '127.0.19.2' });
});

test('an MX host whose address was forged after signing is deferred, and the forged address never sees a connection', async () => {
  const id = await send('user@forged.dane.test');
  const attempt = await finalEvent(id);
  expect(attempt).toMatchObject({ status: 'deferred', error_kind: 'routing', smtp_text: expect.stringContaining('mx-forged.dane.test: address lookup failed (ESERVFAIL') });
  expect(forgedTarget.connections).toBe(0);
  expect(signedMx.messages.filter((m) => m.to.includes('user@forged.dane.test'))).toEqual([]);
});
