// The seam between the TLS policy resolver and a DNSSEC-validating TLSA
// lookup (RFC 7672). Engineer D's real lookup (a validating resolver, the AD
// bit) implements this interface; until one is configured, the default below
// answers "not secure", so `auto` and `dane` never pick DANE on data nobody
// validated.

import type { TlsaRecord } from '../../../shared/smtp/connector';

export interface TlsaAnswer {
  /** True only when the validating resolver set AD on the answer (or on its denial of existence). */
  secure: boolean;
  /** The TLSA records of _<port>._tcp.<host>; empty when there are none. */
  records: TlsaRecord[];
  /** Why the answer cannot be used for DANE, for the logs (e.g. no validating resolver). */
  reason?: string;
  /** Where the records were found when that is not the host itself (a CNAME-expanded name, RFC 7672 2.2.3): DANE-TA accepts a certificate for it too. */
  baseDomain?: string;
}

export interface TlsaLookup {
  /**
   * TLSA records of `_<port>._tcp.<host>`. Throws when the lookup fails
   * (SERVFAIL, bogus signatures, timeout): DANE then cannot say the MX is
   * safe to skip, so the resolver defers rather than fall back (RFC 7672 2.2).
   */
  lookup(host: string, port: number): Promise<TlsaAnswer>;
}

/** The lookup the MTA uses until a DNSSEC resolver is configured: never secure, so never DANE. */
export const noDnssecResolver: TlsaLookup = {
  lookup: () => Promise.resolve({ secure: false, records: [], reason: 'no DNSSEC resolver configured' }),
};
