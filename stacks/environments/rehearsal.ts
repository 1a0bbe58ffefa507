// rehearsal: the environment `npm run rehearsal` synthesises and runs on one
// machine (test/rehearsal/). Staging's shape at its smallest: two AZs with one
// MTA slot each, two proxies with two sending IPs each, one load balancer. Its
// addresses are used unchanged inside the rehearsal's network namespace, so
// they are private (10.60/16) and never reach a real network.
export const rehearsal = {
  name: 'rehearsal',
  account: '333333333333',
  region: 'eu-west-1',
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  amiId: 'ami-0a1b2c3d4e5f60718',
  volleyConfigFile: 'assets/config/volley.rehearsal.yaml',
  network: { vpcCidr: '10.60.0.0/16', natGateways: 1, allowedCidrs: ['10.0.0.0/8'] },
  mta: {
    instanceType: 'c6in.large',
    slotsPerAz: 1,
    // Every slot whose retained volume exists: remove one only after draining it and deleting its volume (README, scaling in).
    volumeSlots: ['rehearsal-mta-eu-west-1a-1', 'rehearsal-mta-eu-west-1b-1'],
    // The rehearsal's loop devices are sized by the harness, not by this.
    volume: { sizeGiB: 20, iops: 3000, throughputMiBps: 125 },
    smtpPorts: [25, 587],
    apiPort: 8080,
    adminPort: 8025,
    // drain.listen of the generated MTA config: only the other MTAs reach it.
    drainPort: 8443,
    // The operator's DKIM key for sender.rehearsal.test, seeded by the rehearsal as `aws secretsmanager create-secret` would.
    fileSecrets: ['volley/rehearsal/mta-files'],
    // Bounces and feedback reports: the MTAs listen on 2525, an internet-facing NLB takes 25 for the domain's MX.
    inbound: { port: 2525, domains: ['bounces.rehearsal.test'] },
  },
  proxy: {
    instanceType: 'c6in.large',
    port: 7025,
    proxies: [
      { name: 'proxy-a1', availabilityZone: 'eu-west-1a', interfaceIp: '10.60.0.10', sendingIps: ['10.60.0.11', '10.60.0.12'] },
      { name: 'proxy-b1', availabilityZone: 'eu-west-1b', interfaceIp: '10.60.1.10', sendingIps: ['10.60.1.11', '10.60.1.12'] },
    ],
  },
  ingress: {
    internetFacing: false,
    apiListenerPort: 8080,
    deregistrationDelaySeconds: 30,
    loadBalancers: [{ name: 'nlb-a', weight: 100 }],
  },
  dns: {
    hostedZoneId: 'Z0REHEARSAL0000000001',
    zoneName: 'rehearsal.mail.example.com',
    smtpRecordName: 'smtp.rehearsal.mail.example.com',
    apiRecordName: 'api.rehearsal.mail.example.com',
  },
  storage: { infrequentAccessAfterDays: 30, glacierAfterDays: 60, expireAfterDays: 90 },
  rollout: { readyTimeoutMinutes: 5 },
};
