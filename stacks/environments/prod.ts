// prod: three AZs, two MTA slots per AZ on c6in.32xlarge, c6in.8xlarge proxies
// holding the sending IPs, two load balancers behind weighted DNS.
export const prod = {
  name: 'prod',
  account: '333333333333',
  region: 'us-east-1',
  availabilityZones: ['us-east-1a', 'us-east-1b', 'us-east-1c'],
  amiId: 'ami-0f1e2d3c4b5a69788',
  volleyConfigFile: 'assets/config/volley.prod.yaml',
  network: { vpcCidr: '10.60.0.0/16', natGateways: 3, allowedCidrs: ['10.0.0.0/8', '172.16.0.0/12'] },
  mta: {
    instanceType: 'c6in.32xlarge',
    slotsPerAz: 2,
    // Every slot whose retained volume exists: remove one only after draining it and deleting its volume (README, scaling in).
    volumeSlots: [
      'prod-mta-us-east-1a-1',
      'prod-mta-us-east-1a-2',
      'prod-mta-us-east-1b-1',
      'prod-mta-us-east-1b-2',
      'prod-mta-us-east-1c-1',
      'prod-mta-us-east-1c-2',
    ],
    volume: { sizeGiB: 2000, iops: 16000, throughputMiBps: 1000 },
    smtpPorts: [25, 587],
    apiPort: 8080,
    adminPort: 8025,
    // drain.listen of the generated MTA config: only the other MTAs reach it.
    drainPort: 8443,
  },
  proxy: {
    instanceType: 'c6in.8xlarge',
    port: 7025,
    proxies: [
      { name: 'proxy-a1', availabilityZone: 'us-east-1a', interfaceIp: '10.60.0.10', sendingIps: ['10.60.0.11', '10.60.0.12', '10.60.0.13', '10.60.0.14'] },
      { name: 'proxy-b1', availabilityZone: 'us-east-1b', interfaceIp: '10.60.1.10', sendingIps: ['10.60.1.11', '10.60.1.12', '10.60.1.13', '10.60.1.14'] },
      { name: 'proxy-c1', availabilityZone: 'us-east-1c', interfaceIp: '10.60.2.10', sendingIps: ['10.60.2.11', '10.60.2.12', '10.60.2.13', '10.60.2.14'] },
    ],
  },
  ingress: {
    internetFacing: false,
    apiListenerPort: 443,
    // RFC 5321 gives a client 10 minutes for the DATA phase; let the longest one finish.
    deregistrationDelaySeconds: 600,
    loadBalancers: [
      { name: 'nlb-a', weight: 50 },
      { name: 'nlb-b', weight: 50 },
    ],
  },
  dns: {
    hostedZoneId: 'Z0PROD00000000000001',
    zoneName: 'mail.example.com',
    smtpRecordName: 'smtp.mail.example.com',
    apiRecordName: 'api.mail.example.com',
  },
  storage: { infrequentAccessAfterDays: 30, glacierAfterDays: 90, expireAfterDays: 400 },
  rollout: { readyTimeoutMinutes: 45 },
};
