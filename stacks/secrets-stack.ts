// The environment's proxy-link secrets in AWS Secrets Manager: the link
// secret (the MTA↔proxy shared HMAC secret and the proxy CA's certificate
// that MTAs pin), read by every slot, and the CA key secret (the CA's
// certificate and private key), read by proxy slots only, so that no MTA can
// mint a proxy certificate. No value is ever in a template: CloudFormation
// generates the shared secret inside Secrets Manager, and `volley proxy-link
// init` adds the CA once (see the README).
import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { VolleyStack, VolleyStackProps } from './volley-stack';

/** The secret's name: one per environment. */
export function proxyLinkSecretName(envName: string): string {
  return `volley/${envName}/proxy-link`;
}

/** The drain secret's name: read by MTA slots only (runtime/bootstrap/drain-secret.ts). */
export function drainSecretName(envName: string): string {
  return `volley/${envName}/drain`;
}

/** The HA mirror's secret's name: read by the nodes of MTA pairs only (runtime/bootstrap/mirror-secret.ts). */
export function mirrorSecretName(envName: string): string {
  return `volley/${envName}/mirror`;
}

/** The CA key secret's name: beside the link secret, where `volley proxy-link init` finds it by default. */
export function proxyCaKeySecretName(envName: string): string {
  return `volley/${envName}/proxy-ca-key`;
}

const NO_ROTATION_LAMBDA =
  'Both ends of every MTA-proxy link must switch together, which a rotation Lambda cannot coordinate; rotation is the documented `volley proxy-link init --rotate-…` procedure (README, Deploying to AWS).';

/**
 * Deployed before the tiers, which read the secret at every daemon start.
 * Retained: deleting it would cut every MTA from every proxy at their next
 * restart.
 */
export class SecretsStack extends VolleyStack {
  readonly proxyLink: secretsmanager.Secret;
  /** Readable by proxy slots only. */
  readonly proxyCaKey: secretsmanager.Secret;
  /** The drain's HMAC secret: readable by MTA slots only. */
  readonly drain: secretsmanager.Secret;
  /** The mirror link's HMAC secret and CA: only when the MTA slots are pairs (mta.ha), readable by their nodes only. */
  readonly mirror?: secretsmanager.Secret;

  constructor(scope: Construct, id: string, props: VolleyStackProps) {
    super(scope, id, props);
    this.proxyLink = new secretsmanager.Secret(this, 'ProxyLink', {
      secretName: proxyLinkSecretName(this.config.name),
      description: `Volley ${this.config.name}: MTA-proxy shared secret ("secret", generated here; "previous_secret" during a rotation) and the proxy CA's certificate ("ca_cert", added by volley proxy-link init)`,
      // 64 letters and digits (>= 32 bytes, what both loaders require), made by Secrets Manager itself.
      generateSecretString: { secretStringTemplate: '{}', generateStringKey: 'secret', passwordLength: 64, excludePunctuation: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.proxyLink).acknowledge({ id: 'AwsSolutions-SMG4', reason: NO_ROTATION_LAMBDA });
    this.proxyCaKey = new secretsmanager.Secret(this, 'ProxyCaKey', {
      secretName: proxyCaKeySecretName(this.config.name),
      description: `Volley ${this.config.name}: the proxy CA ("ca_cert", "ca_key", added by volley proxy-link init), read by proxies only`,
      // A JSON object without a CA until init runs: the placeholder only keeps CloudFormation from storing a bare password.
      generateSecretString: { secretStringTemplate: '{}', generateStringKey: 'placeholder', passwordLength: 16, excludePunctuation: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.proxyCaKey).acknowledge({ id: 'AwsSolutions-SMG4', reason: NO_ROTATION_LAMBDA });
    this.drain = new secretsmanager.Secret(this, 'Drain', {
      secretName: drainSecretName(this.config.name),
      description: `Volley ${this.config.name}: the HMAC secret volley drain signs batches with and every MTA's drain endpoint checks ("secret", generated here; "previous_secret" during a rotation)`,
      generateSecretString: { secretStringTemplate: '{}', generateStringKey: 'secret', passwordLength: 64, excludePunctuation: true },
      // Deleting it would stop every drain at the MTAs' next restart, when the queue most needs to move.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.drain).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason: 'Every MTA must hold the new secret (and accept the previous one) before any signs with it, which a rotation Lambda cannot coordinate; rotation is the documented procedure (README, drain on AWS).',
    });
    if (this.config.mta.ha) {
      this.mirror = new secretsmanager.Secret(this, 'Mirror', {
        secretName: mirrorSecretName(this.config.name),
        description: `Volley ${this.config.name}: the HA mirror link's HMAC secret ("secret", generated here; "previous_secret" during a rotation) and the mirror CA ("ca_cert", "ca_key", added by volley mirror-secret init)`,
        generateSecretString: { secretStringTemplate: '{}', generateStringKey: 'secret', passwordLength: 64, excludePunctuation: true },
        // Deleting it would cut every pair's link at the nodes' next restart, and with it the copy of every queue.
        removalPolicy: RemovalPolicy.RETAIN,
      });
      Validations.of(this.mirror).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason: 'Both nodes of every pair must hold the new secret before either proves it, which a rotation Lambda cannot coordinate; rotation is the documented procedure (README, MTA slots as HA pairs).',
      });
    }
  }
}
