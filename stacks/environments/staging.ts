// staging: production's shape (two load balancers behind weighted DNS, proxies
// in two AZs) at a fraction of its size, so failover and rolls are rehearsed.
export const staging = {
  name: 'staging',
  account: '222222222222',
  region: 'eu-west-1',
  availabilityZones: ['eu-west-1a', 'eu-west-1b'],
  amiId: 'ami-0a1b2c3d4e5f60718',
  volleyConfigFile: 'assets/config/volley.staging.yaml',
  network: { vpcCidr: '10.50.0.0/16', natGateways: 2, allowedCidrs: ['10.0.0.0/8'] },
  mta: {
    instanceType: 'c6in.4xlarge',
    slotsPerAz: 1,
    // Every slot whose retained volume exists: remove one only after draining it and deleting its volume (README, scaling in).
    volumeSlots: ['staging-mta-eu-west-1a-1', 'staging-mta-eu-west-1b-1'],
    volume: { sizeGiB: 200, iops: 6000, throughputMiBps: 250 },
    smtpPorts: [25, 587],
    apiPort: 8080,
    adminPort: 8025,
    // drain.listen of the generated MTA config: only the other MTAs reach it.
    drainPort: 8443,
  },
  proxy: {
    instanceType: 'c6in.2xlarge',
    port: 7025,
    proxies: [
      { name: 'proxy-a1', availabilityZone: 'eu-west-1a', interfaceIp: '10.50.0.10', sendingIps: ['10.50.0.11', '10.50.0.12'] },
      { name: 'proxy-b1', availabilityZone: 'eu-west-1b', interfaceIp: '10.50.1.10', sendingIps: ['10.50.1.11', '10.50.1.12'] },
    ],
  },
  ingress: {
    internetFacing: false,
    apiListenerPort: 443,
    deregistrationDelaySeconds: 600,
    loadBalancers: [
      { name: 'nlb-a', weight: 50 },
      { name: 'nlb-b', weight: 50 },
    ],
  },
  dns: {
    hostedZoneId: 'Z0STAGING000000000001',
    zoneName: 'staging.mail.example.com',
    smtpRecordName: 'smtp.staging.mail.example.com',
    apiRecordName: 'api.staging.mail.example.com',
  },
  storage: { infrequentAccessAfterDays: 30, glacierAfterDays: 90, expireAfterDays: 180 },
  rollout: { readyTimeoutMinutes: 30 },
};
