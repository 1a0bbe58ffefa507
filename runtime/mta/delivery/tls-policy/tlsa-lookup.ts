// The seam between the MTA's TLS policy and DNSSEC: TLSA records of one MX
// host, and whether a validating resolver vouched for them. Without a
// DNSSEC-validating resolver configured nothing is ever secure, so DANE never
// applies (the default below); tlsa-dns.ts asks the configured resolver.
import type { TlsaRecord } from '../../../shared/smtp/connector';

export interface TlsaLookupResult {
  /**
   * True when the resolver validated the answer (AD): `records` is then the
   * MX host's TLSA RRset (empty: securely none). False: DANE does not apply
   * to this host (RFC 7672 2.2: an insecure answer is as good as none).
   */
  secure: boolean;
  records: TlsaRecord[];
}

export interface TlsaLookup {
  /**
   * The TLSA records of `_<port>._tcp.<host>`. Rejects when the answer cannot
   * be trusted either way (a bogus signature, a resolver that fails): the
   * policy defers the message then, it never falls back to clear text.
   */
  lookup(host: string, port: number): Promise<TlsaLookupResult>;
}

/** No DNSSEC resolver configured: every host is insecure, DANE never applies. */
export const noDnssecResolver: TlsaLookup = {
  lookup: async () => ({ secure: false, records: [] }),
};
