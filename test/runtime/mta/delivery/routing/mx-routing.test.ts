import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deliveryConfigYaml } from '../../../../helpers/config';
import { rr, startDnsmasq, type Dnsmasq } from '../../../../helpers/dnsmasq';
import { startMta, type MtaProcess } from '../../../../helpers/mta-process';
import { ScriptedMx } from '../../../../helpers/scripted-mx';
import { inject, message } from '../../../../helpers/smtp-dialog';
import { tempDir } from '../../../../helpers/tmp';
import { readAttempts } from '../../../../helpers/attempt-log';
import { waitUntil } from '../../../../helpers/proxy-fixtures';

// Real MX lookups through a private dnsmasq on loopback. MX records cannot
// carry a port, so the receiving servers listen on port 25 of their own
// loopback addresses (root, as CI runs).
const dir = tempDir();
const second = new ScriptedMx({ address: '127.0.0.9' });
const implicit = new ScriptedMx({ address: '127.0.0.10' });
let dns: Dnsmasq;
let mta: MtaProcess;

beforeAll(async () => {
  await second.listen(25);
  await implicit.listen(25);
  dns = await startDnsmasq([
    '--local=/test/',
    rr.mx('fallback.test', 'mx1.fallback.test', 10),
    rr.mx('fallback.test', 'mx2.fallback.test', 20),
    rr.host('mx1.fallback.test', '127.0.0.8'), // nothing listens there: refused
    rr.host('mx2.fallback.test', '127.0.0.9'),
    rr.host('implicit.test', '127.0.0.10'), // no MX at all
    rr.mx('nullmx.test', '.', 0),
  ]);
  const config = join(dir, 'volley.yaml');
  writeFileSync(
    config,
    deliveryConfigYaml(`resolver: { servers: ["${dns.server}"] }
delivery: { retry: [1h] }
`),
  );
  mta = await startMta({ configPath: config, persistentPath: join(dir, 'pp'), workers: 1 });
});
afterAll(async () => {
  await mta?.stop();
  await second.close();
  await implicit.close();
});

const send = (to: string): Promise<string> => inject(mta.smtpPort, 'a@shop.example', [to], message('mx'));

function eventsFor(id: string): { status: string; mx_host?: string; mx_ip?: string; smtp_code?: number; enhanced_code?: string }[] {
  return readAttempts<{ message_id: string; status: string; mx_host?: string; mx_ip?: string; smtp_code?: number; enhanced_code?: string }>(join(dir, 'pp', 'log', 'events')).filter((e) => e.message_id === id);
}

async function finalEvent(id: string): Promise<ReturnType<typeof eventsFor>[number]> {
  await waitUntil(() => eventsFor(id).length > 0, 10_000, () => `no event for ${id}`);
  return eventsFor(id).at(-1)!;
}

test('the first MX refuses connections: the mail goes to the second', async () => {
  const id = await send('user@fallback.test');
  await second.waitFor(1);
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'mx2.fallback.test', mx_ip: '127.0.0.9' });
});

test('a domain with no MX is delivered to its own address (implicit MX)', async () => {
  const id = await send('user@implicit.test');
  await implicit.waitFor(1);
  expect(await finalEvent(id)).toMatchObject({ status: 'delivered', mx_host: 'implicit.test', mx_ip: '127.0.0.10' });
});

test('a null MX fails at once, permanently', async () => {
  const id = await send('user@nullmx.test');
  expect(await finalEvent(id)).toMatchObject({ status: 'failed', smtp_code: 556, enhanced_code: '5.1.10' });
});

test('a domain that does not exist fails permanently; the queries went to our resolver', async () => {
  const id = await send('user@nowhere.test');
  expect(await finalEvent(id)).toMatchObject({ status: 'failed', smtp_code: 550 });
  expect(dns.queries()).toEqual(expect.arrayContaining(['MX fallback.test', 'MX implicit.test', 'MX nullmx.test', 'MX nowhere.test']));
});
