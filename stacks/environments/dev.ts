// dev: the smallest fleet that still exercises every path (two AZs, one MTA
// slot each, one proxy, one load balancer).
export const dev = {
  name: 'dev',
  account: '111111111111',
  region: 'eu-west-1',
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  // Amazon Linux 2023 (x86_64), pinned: bump it deliberately, it replaces every instance.
  amiId: 'ami-0a1b2c3d4e5f60718',
  volleyConfigFile: 'assets/config/volley.dev.yaml',
  network: { vpcCidr: '10.40.0.0/16', natGateways: 1, allowedCidrs: ['10.0.0.0/8'] },
  mta: {
    instanceType: 'c6in.large',
    slotsPerAz: 1,
    // Every slot whose retained volume exists: remove one only after draining it and deleting its volume (README, scaling in).
    volumeSlots: ['dev-mta-eu-west-1a-1', 'dev-mta-eu-west-1b-1'],
    volume: { sizeGiB: 50, iops: 3000, throughputMiBps: 125 },
    smtpPorts: [25, 587],
    apiPort: 8080,
    adminPort: 8025,
    // drain.listen of the generated MTA config: only the other MTAs reach it.
    drainPort: 8443,
  },
  proxy: {
    instanceType: 'c6in.large',
    port: 7025,
    proxies: [{ name: 'proxy-a1', availabilityZone: 'eu-west-1a', interfaceIp: '10.40.0.10', sendingIps: ['10.40.0.11', '10.40.0.12'] }],
  },
  ingress: {
    internetFacing: false,
    apiListenerPort: 8080,
    deregistrationDelaySeconds: 120,
    loadBalancers: [{ name: 'nlb-a', weight: 100 }],
  },
  dns: {
    hostedZoneId: 'Z0DEV0000000000000001',
    zoneName: 'dev.mail.example.com',
    smtpRecordName: 'smtp.dev.mail.example.com',
    apiRecordName: 'api.dev.mail.example.com',
  },
  storage: { infrequentAccessAfterDays: 30, glacierAfterDays: 60, expireAfterDays: 90 },
  rollout: { readyTimeoutMinutes: 20 },
};
