// DANE for SMTP (RFC 7672): matches the certificate chain an MX presented
// against its TLSA records. DANE-EE (3) matches the leaf and nothing else is
// checked (no name, no dates: the record is the trust); DANE-TA (2) matches an
// issuer in the presented chain, which must then sign its way down to the leaf,
// and the leaf must be valid now and issued for one of the names.
import { createHash, X509Certificate } from 'node:crypto';
import type { TlsaRecord } from './connector';

/** The result of a DANE check, in RFC 8460's words when it fails. */
export interface DaneResult {
  verified: boolean;
  failure?: 'tlsa-invalid' | 'certificate-host-mismatch' | 'certificate-expired' | 'validation-failure';
  /** For the log: which record matched, or why none did. */
  detail: string;
}

/**
 * The records an SMTP client may use (RFC 7672 3.1): usages 2 and 3 only
 * (PKIX-TA/PKIX-EE presume a CA list SMTP has no agreement on), selectors 0
 * and 1, matching types 0, 1 and 2. With none left, DANE does not apply.
 */
export function usableTlsa(records: readonly TlsaRecord[]): TlsaRecord[] {
  return records.filter((r) => (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && r.matchingType >= 0 && r.matchingType <= 2);
}

/** True when the certificate (DER) is what the record describes. */
export function tlsaMatches(der: Buffer, record: TlsaRecord): boolean {
  let selected: Buffer;
  if (record.selector === 0) selected = der;
  else if (record.selector === 1) selected = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  else return false;
  let digest: Buffer;
  if (record.matchingType === 0) digest = selected;
  else if (record.matchingType === 1) digest = createHash('sha256').update(selected).digest();
  else if (record.matchingType === 2) digest = createHash('sha512').update(selected).digest();
  else return false;
  return digest.toString('hex') === record.data.toLowerCase();
}

/**
 * Checks a presented chain (DER, leaf first, each the issuer of the one
 * before) against the usable records. `names` are the reference identifiers
 * for DANE-TA (RFC 7672 3.2.2: the MX host, and the TLSA base domain when a
 * CNAME led there); DANE-EE ignores them.
 */
export function daneVerify(chain: readonly Buffer[], records: readonly TlsaRecord[], names: readonly string[], now: Date = new Date()): DaneResult {
  const usable = usableTlsa(records);
  if (usable.length === 0) return { verified: false, failure: 'tlsa-invalid', detail: 'no usable TLSA record' };
  if (chain.length === 0) return { verified: false, failure: 'validation-failure', detail: 'the server presented no certificate' };
  let certs: X509Certificate[];
  try {
    certs = chain.map((der) => new X509Certificate(der));
  } catch (err) {
    return { verified: false, failure: 'validation-failure', detail: `unreadable certificate: ${(err as Error).message}` };
  }
  const ee = usable.find((r) => r.usage === 3 && tlsaMatches(chain[0], r));
  if (ee) return { verified: true, detail: `DANE-EE ${describe(ee)} matched the leaf` };
  // A later failure (dates, names) is more telling than "no match" once a TA matched.
  let taFailure: DaneResult | undefined;
  for (const ta of usable.filter((r) => r.usage === 2)) {
    for (let i = 1; i < chain.length; i++) {
      if (!tlsaMatches(chain[i], ta)) continue;
      const result = chainTo(certs, i, names, now);
      if (result.verified) return { verified: true, detail: `DANE-TA ${describe(ta)} matched issuer ${certs[i].subject.replace(/\n/g, ', ')}` };
      taFailure ??= result;
    }
  }
  return taFailure ?? { verified: false, failure: 'tlsa-invalid', detail: `no TLSA record matched the chain (${usable.map(describe).join('; ')})` };
}

/** The leaf up to the trust anchor at `ta`: each signed by the next, valid now, the leaf issued for one of the names. */
function chainTo(certs: X509Certificate[], ta: number, names: readonly string[], now: Date): DaneResult {
  for (let i = 0; i < ta; i++) {
    if (!certs[i].checkIssued(certs[i + 1]) || !certs[i].verify(certs[i + 1].publicKey)) {
      return { verified: false, failure: 'validation-failure', detail: `certificate ${i} of the chain is not signed by the next` };
    }
    const t = now.getTime();
    if (t < Date.parse(certs[i].validFrom) || t > Date.parse(certs[i].validTo)) {
      return { verified: false, failure: 'certificate-expired', detail: `certificate ${i} of the chain is not valid now (${certs[i].validFrom} - ${certs[i].validTo})` };
    }
  }
  if (!names.some((n) => certs[0].checkHost(n) !== undefined)) {
    return { verified: false, failure: 'certificate-host-mismatch', detail: `the certificate is not issued for ${names.join(' or ') || '(no name)'}` };
  }
  return { verified: true, detail: '' };
}

function describe(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data.slice(0, 16)}${r.data.length > 16 ? '...' : ''}`;
}
