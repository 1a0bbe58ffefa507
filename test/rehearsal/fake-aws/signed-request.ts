// Sends one SigV4-signed request the way an AWS client would, for the
// services whose SDK client packages this project does not install (SSM,
// Secrets Manager, CloudFormation). The endpoint comes from the same
// AWS_ENDPOINT_URL_<SERVICE> variable the SDK reads.
import { SignatureV4 } from '@smithy/signature-v4';
import { createHash, createHmac } from 'node:crypto';

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === 'string') return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** SignatureV4 wants a Checksum constructor: SHA-256, or HMAC-SHA-256 when given a secret. */
class Sha256 {
  private readonly hash: ReturnType<typeof createHash> | ReturnType<typeof createHmac>;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    throw new Error('not used');
  }
}

export interface SignedRequest {
  /** The signing name: "ssm", "secretsmanager", "cloudformation". */
  readonly service: string;
  /** The suffix of AWS_ENDPOINT_URL_<SERVICE>: "SSM", "SECRETS_MANAGER", "CLOUDFORMATION". */
  readonly endpointVariable: string;
  readonly region: string;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export async function signedRequest(r: SignedRequest): Promise<{ status: number; text: string }> {
  const variable = `AWS_ENDPOINT_URL_${r.endpointVariable}`;
  const base = process.env[variable];
  if (!base) throw new Error(`${variable} is not set`);
  const url = new URL(base);
  const signer = new SignatureV4({
    service: r.service,
    region: r.region,
    credentials: { accessKeyId: 'AKIAFAKEREHEARSAL', secretAccessKey: 'fake' },
    sha256: Sha256,
  });
  const signed = await signer.sign({
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    headers: { host: url.host, ...r.headers },
    body: r.body,
  });
  const response = await fetch(new URL('/', url), { method: 'POST', headers: signed.headers, body: r.body });
  return { status: response.status, text: await response.text() };
}
