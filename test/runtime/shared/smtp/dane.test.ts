// DANE matching (RFC 7672) against certificates openssl makes, with TLSA data
// computed by openssl too: the code under test never grades its own hashing.
import { daneVerify, tlsaMatches, usableTlsa } from '../../../../runtime/shared/smtp/dane';
import type { TlsaRecord } from '../../../../runtime/shared/smtp/connector';
import { makeCa, makeLeaf, tlsaData, type TestCert } from '../../../helpers/test-pki';
import { tempDir } from '../../../helpers/tmp';

const dir = tempDir('volley-dane-');
let ca: TestCert;
let leaf: TestCert;
let other: TestCert;
let otherCa: TestCert;
let strangerLeaf: TestCert;
let expired: TestCert;

beforeAll(() => {
  ca = makeCa(dir, 'ca');
  otherCa = makeCa(dir, 'other-ca');
  leaf = makeLeaf(dir, 'leaf', ['mx.example.test'], { ca });
  other = makeLeaf(dir, 'other', ['mx.example.test'], { ca });
  strangerLeaf = makeLeaf(dir, 'stranger', ['mx.example.test'], { ca: otherCa });
  expired = makeLeaf(dir, 'expired', ['mx.example.test'], { ca, days: -1 });
});

const rec = (usage: number, selector: 0 | 1, matchingType: 0 | 1 | 2, cert: TestCert): TlsaRecord => ({ usage, selector, matchingType, data: tlsaData(cert, selector, matchingType) });

test('each selector and matching type matches the certificate it was made from, and only that one', () => {
  for (const selector of [0, 1] as const) {
    for (const matchingType of [0, 1, 2] as const) {
      const r = rec(3, selector, matchingType, leaf);
      expect([selector, matchingType, tlsaMatches(leaf.der, r)]).toEqual([selector, matchingType, true]);
      expect([selector, matchingType, tlsaMatches(other.der, r)]).toEqual([selector, matchingType, false]);
    }
  }
  // Hex case does not matter (zone files carry either).
  const upper = rec(3, 1, 1, leaf);
  expect(tlsaMatches(leaf.der, { ...upper, data: upper.data.toUpperCase() })).toBe(true);
});

test('DANE-EE: the leaf matches by full certificate or by SPKI, SHA-256 or SHA-512; names and dates are not checked', () => {
  expect(daneVerify([leaf.der], [rec(3, 1, 1, leaf)], ['mx.example.test'])).toMatchObject({ verified: true });
  expect(daneVerify([leaf.der, ca.der], [rec(3, 0, 2, leaf)], ['mx.example.test'])).toMatchObject({ verified: true });
  // RFC 7672 3.1.1: with DANE-EE the record is the trust; the name and the expiry do not matter.
  expect(daneVerify([expired.der], [rec(3, 0, 1, expired)], ['elsewhere.test'])).toMatchObject({ verified: true });
});

test('DANE-EE: a record for another certificate does not match', () => {
  expect(daneVerify([leaf.der, ca.der], [rec(3, 1, 1, other), rec(3, 0, 1, other)], ['mx.example.test'])).toMatchObject({ verified: false, failure: 'tlsa-invalid' });
});

test('DANE-TA: an issuer in the presented chain matches, and the leaf must be signed by it, valid now, and issued for one of the names', () => {
  expect(daneVerify([leaf.der, ca.der], [rec(2, 0, 1, ca)], ['mx.example.test'])).toMatchObject({ verified: true });
  expect(daneVerify([leaf.der, ca.der], [rec(2, 1, 2, ca)], ['other.test', 'mx.example.test'])).toMatchObject({ verified: true });
  expect(daneVerify([leaf.der, ca.der], [rec(2, 1, 1, ca)], ['other.test'])).toMatchObject({ verified: false, failure: 'certificate-host-mismatch' });
  expect(daneVerify([expired.der, ca.der], [rec(2, 1, 1, ca)], ['mx.example.test'])).toMatchObject({ verified: false, failure: 'certificate-expired' });
  // The CA is presented, but this leaf was not issued by it.
  expect(daneVerify([strangerLeaf.der, ca.der], [rec(2, 1, 1, ca)], ['mx.example.test'])).toMatchObject({ verified: false, failure: 'validation-failure' });
  // A TA record never matches the leaf itself, and an issuer that is not presented cannot match.
  expect(daneVerify([leaf.der], [rec(2, 0, 1, leaf)], ['mx.example.test'])).toMatchObject({ verified: false, failure: 'tlsa-invalid' });
  expect(daneVerify([leaf.der], [rec(2, 0, 1, ca)], ['mx.example.test'])).toMatchObject({ verified: false, failure: 'tlsa-invalid' });
});

test('usages 0 and 1 (PKIX) and unknown selectors or matching types are unusable for SMTP, and with none usable nothing verifies', () => {
  const pkix = [rec(0, 0, 1, ca), rec(1, 1, 1, leaf)];
  const odd: TlsaRecord[] = [
    { usage: 3, selector: 2, matchingType: 1, data: '00' },
    { usage: 3, selector: 1, matchingType: 3, data: '00' },
  ];
  expect(usableTlsa([...pkix, ...odd])).toEqual([]);
  const good = rec(3, 1, 1, leaf);
  expect(usableTlsa([...pkix, good])).toEqual([good]);
  expect(daneVerify([leaf.der, ca.der], pkix, ['mx.example.test'])).toMatchObject({ verified: false, failure: 'tlsa-invalid', detail: 'no usable TLSA record' });
});

test('an empty or unreadable chain fails as validation-failure', () => {
  const r = [rec(3, 1, 1, leaf)];
  expect(daneVerify([], r, ['mx.example.test'])).toMatchObject({ verified: false, failure: 'validation-failure' });
  expect(daneVerify([Buffer.from('not a certificate')], r, ['mx.example.test'])).toMatchObject({ verified: false, failure: 'validation-failure' });
});
