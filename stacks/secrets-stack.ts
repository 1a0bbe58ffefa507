// The environment's proxy-link secret in AWS Secrets Manager: the MTA↔proxy
// shared HMAC secret and the proxy CA that MTAs pin. No value of it is ever
// in a template: CloudFormation generates the shared secret inside Secrets
// Manager, and `volley proxy-link init` adds the CA once (see the README).
import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { VolleyStack, VolleyStackProps } from './volley-stack';

/** The secret's name: one per environment. */
export function proxyLinkSecretName(envName: string): string {
  return `volley/${envName}/proxy-link`;
}

/**
 * Deployed before the tiers, which read the secret at every daemon start.
 * Retained: deleting it would cut every MTA from every proxy at their next
 * restart.
 */
export class SecretsStack extends VolleyStack {
  readonly proxyLink: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, props);
    this.proxyLink = new secretsmanager.Secret(this, 'ProxyLink', {
      secretName: proxyLinkSecretName(this.config.name),
      description: `Volley ${this.config.name}: MTA-proxy shared secret ("secret", generated here) and proxy CA ("ca_cert", "ca_key", added by volley proxy-link init)`,
      // 64 letters and digits (>= 32 bytes, what both loaders require), made by Secrets Manager itself.
      generateSecretString: { secretStringTemplate: '{}', generateStringKey: 'secret', passwordLength: 64, excludePunctuation: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.proxyLink).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Both ends of every MTA-proxy link must switch together, which a rotation Lambda cannot coordinate; rotation is the documented `volley proxy-link init --rotate-…` procedure (README, Deploying to AWS).',
    });
  }
}
