// The CAs a `verify` session (and so MTA-STS) checks an MX certificate
// against, as an operator configures them (the MTA's delivery.tls_ca_file, the
// proxy's mx_tls_ca_file; Postfix's smtp_tls_CAfile): Node's default store
// (NODE_EXTRA_CA_CERTS included) plus the file's PEM certificates. Added, not
// replacing: a private CA must not cost verification against the public ones
// every MTA-STS domain on the Internet is issued by. Built once as a secure
// context: handing `ca` to each handshake would parse the whole store per
// connection. DANE needs none of this (the TLSA records are the trust).
import { readFileSync } from 'node:fs';
import { createSecureContext, getCACertificates, type SecureContext } from 'node:tls';
import { VolleyError } from '../errors';

/** The trust store for MX certificates: Node's default CAs plus `file`'s; `setting` names the key in errors. */
export function mxTrust(file: string, setting: string): SecureContext {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new VolleyError('ETLSCAFILE', `${setting}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new VolleyError('ETLSCAFILE', `${setting}: ${file} holds no PEM certificate`);
  try {
    return createSecureContext({ ca: [...getCACertificates('default'), pem] });
  } catch (err) {
    throw new VolleyError('ETLSCAFILE', `${setting}: ${file} is not a usable PEM bundle: ${(err as Error).message}`, { cause: err });
  }
}
