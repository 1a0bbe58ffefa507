// The Volley config each environment publishes must load in the runtime, and
// its VMTAs may only use sending IPs that environment's proxies really hold.
import { join } from 'node:path';
import { loadConfig } from '../../../runtime/shared/config/load';
import { environmentNames, loadEnvironment } from '../../../stacks/environments';
import { REPO_ROOT } from '../helpers';

test.each(environmentNames())('%s: the published config loads and its VMTA IPs are proxy sending IPs', (name) => {
  const env = loadEnvironment(name, REPO_ROOT);
  const config = loadConfig(join(REPO_ROOT, env.volleyConfigFile));
  const sendingIps = new Set(env.proxy.proxies.flatMap((p) => p.sendingIps));
  expect(config.vmtas.length).toBeGreaterThan(0);
  for (const vmta of config.vmtas) expect(sendingIps).toContain(vmta.ip);
  // The load balancers health-check /readyz on the admin port from inside the VPC.
  expect(config.admin).toMatchObject({ port: env.mta.adminPort, address: '0.0.0.0' });
  expect(config.smtp.listeners.map((l) => l.port).sort()).toEqual([...env.mta.smtpPorts].sort());
  expect(config.http.port).toBe(env.mta.apiPort);
});
