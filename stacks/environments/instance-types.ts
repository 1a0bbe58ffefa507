// Per-ENI IPv4 limits of the instance types we accept, from the EC2 docs. A
// proxy's standalone ENI holds its primary IP plus the sending IPs, so the
// limit bounds how many sending IPs one proxy can carry.
export const IPV4_PER_ENI: Readonly<Record<string, number>> = {
  'c6in.large': 10,
  'c6in.xlarge': 15,
  'c6in.2xlarge': 15,
  'c6in.4xlarge': 30,
  'c6in.8xlarge': 30,
  'c6in.12xlarge': 30,
  'c6in.16xlarge': 50,
  'c6in.24xlarge': 50,
  'c6in.32xlarge': 50,
};

export function knownInstanceTypes(): string[] {
  return Object.keys(IPV4_PER_ENI);
}
