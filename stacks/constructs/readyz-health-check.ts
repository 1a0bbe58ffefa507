// The health check every Volley target group uses: the MTA's /readyz on its
// admin port (every worker up, the spool writable, free space above
// spool.min_free), so a load balancer stops sending to an MTA that would
// refuse or could not keep what it is sent.
import { Duration } from 'aws-cdk-lib';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';

export function readyzHealthCheck(adminPort: number): elbv2.HealthCheck {
  return {
    protocol: elbv2.Protocol.HTTP,
    port: String(adminPort),
    path: '/readyz',
    healthyHttpCodes: '200',
    interval: Duration.seconds(10),
    timeout: Duration.seconds(5),
    healthyThresholdCount: 3,
    unhealthyThresholdCount: 2,
  };
}
