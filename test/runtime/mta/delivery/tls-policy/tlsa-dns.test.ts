// The TLSA lookup against a real DNSSEC world on loopback: bind9 serving a
// zone signed with dnssec-signzone (and an unsigned child delegated without
// DS), unbound validating it. SECURE, BOGUS, INSECURE and "securely none" are
// each what a validating resolver really answers, not a scripted reply.
import { createHash } from 'node:crypto';
import { DnsTlsaLookup, parseTlsa, TlsaLookupError, usableTlsa } from '../../../../../runtime/mta/delivery/tls-policy/tlsa-dns';
import { freeUdpPort } from '../../../../helpers/dnsmasq';
import { startDnssec, type DnssecWorld } from '../../../../helpers/dnssec';

const hash = (s: string): string => createHash('sha256').update(s).digest('hex');

let world: DnssecWorld;
let lookup: DnsTlsaLookup;

beforeAll(async () => {
  world = await startDnssec({
    signed: [
      'mx1 A 127.0.0.1',
      'mx1 AAAA ::1',
      `_25._tcp.mx1 TLSA 3 1 1 ${hash('mx1-ee')}`,
      `_25._tcp.mx1 TLSA 2 0 1 ${hash('mx1-ta')}`,
      // no TLSA name at all (NXDOMAIN), and a TLSA name with other data only (NODATA)
      'notlsa A 127.0.0.1',
      'nodata A 127.0.0.1',
      '_25._tcp.nodata TXT "no tlsa here"',
      // an MX host that is an alias: TLSA at the target first, else at the alias
      'alias CNAME mx2',
      'mx2 A 127.0.0.1',
      `_25._tcp.mx2 TLSA 3 1 1 ${hash('mx2')}`,
      'alias-own CNAME notlsa',
      `_25._tcp.alias-own TLSA 3 1 1 ${hash('alias-own')}`,
      // a TLSA name that is an alias of another host's records
      'shared A 127.0.0.1',
      '_25._tcp.shared CNAME _25._tcp.mx1',
      // a signed alias of a host in the unsigned child: the host is in a signed zone, its own name carries TLSA
      'ins-alias CNAME mx.insecure.dane.test.',
      `_25._tcp.ins-alias TLSA 3 1 1 ${hash('ins-alias')}`,
      'ins-alias-none CNAME mx.insecure.dane.test.',
      // a signed host whose TLSA name is an alias into the unsigned child
      'tlsa-to-insecure A 127.0.0.1',
      '_25._tcp.tlsa-to-insecure CNAME _25._tcp.mx.insecure.dane.test.',
      // more TLSA records than fit a 1232-byte UDP answer: it comes over TCP
      'big A 127.0.0.1',
      ...Array.from({ length: 24 }, (_, i) => `_25._tcp.big TLSA 3 1 2 ${createHash('sha512').update(`big${i}`).digest('hex')}`),
      'v6only AAAA ::1',
      // hosts of the bogus records below: a good address, and TLSA records that must never be read
      'bogus-tlsa A 127.0.0.1',
      `_25._tcp.bogus-addr TLSA 3 1 1 ${hash('bogus-addr')}`,
      `_25._tcp.v6only TLSA 3 1 1 ${hash('v6only')}`,
    ],
    bogus: [
      { signed: `_25._tcp.bogus-tlsa TLSA 3 1 1 ${hash('signed')}`, served: `_25._tcp.bogus-tlsa TLSA 3 1 1 ${hash('forged')}` },
      { signed: 'bogus-addr A 127.0.0.1', served: 'bogus-addr A 127.0.0.66' },
    ],
    insecure: [
      'mx A 127.0.0.1',
      `_25._tcp.mx TLSA 3 1 1 ${hash('insecure')}`,
      // an unsigned alias of a signed host: the chain's first link is insecure
      'to-signed CNAME mx1.dane.test.',
    ],
  });
  lookup = new DnsTlsaLookup({ servers: [world.resolver], timeoutMs: 2000, tries: 1 });
});

describe('DnsTlsaLookup through a validating resolver', () => {
  it('returns the TLSA RRset of a signed host as secure', async () => {
    const r = await lookup.lookup('mx1.dane.test', 25);
    expect(r.secure).toBe(true);
    expect(r.baseDomain).toBe('mx1.dane.test');
    expect(r.records).toEqual(
      expect.arrayContaining([
        { usage: 3, selector: 1, matchingType: 1, data: hash('mx1-ee') },
        { usage: 2, selector: 0, matchingType: 1, data: hash('mx1-ta') },
      ]),
    );
    expect(r.records).toHaveLength(2);
    // the records' TTL (300 s, A, AAAA and TLSA alike; a resolver's cache counts it down)
    expect(r.ttl).toBeGreaterThan(60);
    expect(r.ttl).toBeLessThanOrEqual(300);
  });

  it('accepts the host name in any case and with a trailing dot', async () => {
    const r = await lookup.lookup('MX1.Dane.Test.', 25);
    expect(r.secure).toBe(true);
    expect(r.records).toHaveLength(2);
  });

  it('rejects a TLSA RRset whose signature fails (BOGUS): EDNSSECBOGUS, never an answer', async () => {
    const err = await lookup.lookup('bogus-tlsa.dane.test', 25).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TlsaLookupError);
    expect((err as TlsaLookupError).code).toBe('EDNSSECBOGUS');
    expect((err as TlsaLookupError).dnsCode).toBe('ESERVFAIL');
    expect((err as Error).message).toMatch(/TLSA _25\._tcp\.bogus-tlsa\.dane\.test/);
  });

  it('rejects a host whose address record is BOGUS before looking at its TLSA', async () => {
    await expect(lookup.lookup('bogus-addr.dane.test', 25)).rejects.toMatchObject({ code: 'EDNSSECBOGUS', message: expect.stringMatching(/ bogus-addr\.dane\.test/) });
  });

  it('reports securely no TLSA (NXDOMAIN) as secure and empty, for as long as the SOA says a negative answer holds', async () => {
    const r = await lookup.lookup('notlsa.dane.test', 25);
    expect(r).toEqual({ secure: true, records: [], ttl: expect.any(Number) });
    // the zone's SOA minimum is 60 s, its records' TTL 300 s
    expect(r.ttl).toBeGreaterThan(0);
    expect(r.ttl).toBeLessThanOrEqual(60);
  });

  it('reports securely no TLSA (NODATA: the name has other records) as secure and empty', async () => {
    expect(await lookup.lookup('nodata.dane.test', 25)).toMatchObject({ secure: true, records: [] });
  });

  it('asks for the given port: _465._tcp of a host with only _25 records is securely none', async () => {
    expect(await lookup.lookup('mx1.dane.test', 465)).toMatchObject({ secure: true, records: [] });
  });

  it('reads a TLSA RRset too large for UDP over TCP, still validated', async () => {
    const r = await lookup.lookup('big.dane.test', 25);
    expect(r.secure).toBe(true);
    expect(r.records).toHaveLength(24);
    expect(r.records).toContainEqual({ usage: 3, selector: 1, matchingType: 2, data: createHash('sha512').update('big7').digest('hex') });
  });

  it('reports a host in an unsigned zone as insecure, though it publishes TLSA records', async () => {
    expect(await lookup.lookup('mx.insecure.dane.test', 25)).toMatchObject({ secure: false, records: [], reason: 'the addresses of mx.insecure.dane.test are not DNSSEC-validated' });
  });

  it('takes the TLSA records of a signed alias of an unsigned host at the alias, never at the unsigned target', async () => {
    expect(await lookup.lookup('ins-alias.dane.test', 25)).toMatchObject({ secure: true, baseDomain: 'ins-alias.dane.test', records: [{ data: hash('ins-alias') }] });
    expect(await lookup.lookup('ins-alias-none.dane.test', 25)).toMatchObject({ secure: true, records: [] });
  });

  it('reports an unsigned alias of a signed host as insecure (the chain starts outside DNSSEC)', async () => {
    expect(await lookup.lookup('to-signed.insecure.dane.test', 25)).toMatchObject({
      secure: false,
      records: [],
      reason: 'the addresses of to-signed.insecure.dane.test are not DNSSEC-validated (its CNAME is not signed)',
    });
  });

  it('reports a signed host whose TLSA name leads into an unsigned zone as insecure', async () => {
    expect(await lookup.lookup('tlsa-to-insecure.dane.test', 25)).toMatchObject({
      secure: false,
      records: [],
      reason: 'the TLSA answer for _25._tcp.tlsa-to-insecure.dane.test is not DNSSEC-validated',
    });
  });

  it('follows a secure CNAME host: the TLSA records of the expanded name come first', async () => {
    const r = await lookup.lookup('alias.dane.test', 25);
    expect(r).toMatchObject({ secure: true, baseDomain: 'mx2.dane.test', records: [{ usage: 3, selector: 1, matchingType: 1, data: hash('mx2') }] });
  });

  it('falls back to the alias name when the expanded name has no TLSA', async () => {
    const r = await lookup.lookup('alias-own.dane.test', 25);
    expect(r).toMatchObject({ secure: true, baseDomain: 'alias-own.dane.test', records: [{ data: hash('alias-own') }] });
  });

  it('follows a CNAME on the TLSA name itself', async () => {
    const r = await lookup.lookup('shared.dane.test', 25);
    expect(r.secure).toBe(true);
    expect(r.baseDomain).toBe('shared.dane.test');
    expect(r.records.map((t) => t.data).sort()).toEqual([hash('mx1-ee'), hash('mx1-ta')].sort());
  });

  it('treats an IPv6-only host like any other (its AAAA secure, its A securely absent)', async () => {
    expect(await lookup.lookup('v6only.dane.test', 25)).toMatchObject({ secure: true, records: [{ data: hash('v6only') }] });
  });

  it('never applies DANE to an address literal', async () => {
    expect(await lookup.lookup('127.0.0.1', 25)).toEqual({ secure: false, records: [], reason: '127.0.0.1 is an address literal' });
    expect(await lookup.lookup('[127.0.0.1]', 25)).toMatchObject({ secure: false, records: [] });
  });
});

describe('DnsTlsaLookup without a validating resolver', () => {
  it('does not trust signed records from a server that does not validate (no AD): insecure', async () => {
    // bind9 itself: authoritative, sends the records and their RRSIGs, but validates nothing.
    const direct = new DnsTlsaLookup({ servers: [world.authority], timeoutMs: 2000, tries: 1 });
    expect(await direct.lookup('mx1.dane.test', 25)).toMatchObject({ secure: false, records: [] });
  });

  it('rejects with ETLSALOOKUP when the resolver cannot be reached', async () => {
    const nobody = new DnsTlsaLookup({ servers: [`127.0.0.1:${await freeUdpPort()}`], timeoutMs: 2000, tries: 1 });
    await expect(nobody.lookup('mx1.dane.test', 25)).rejects.toMatchObject({ code: 'ETLSALOOKUP', dnsCode: 'ECONNREFUSED' });
  });

  it('rejects a port that is not one', async () => {
    await expect(lookup.lookup('mx1.dane.test', 0)).rejects.toMatchObject({ code: 'ETLSALOOKUP' });
  });
});

describe('DnsTlsaLookup cache', () => {
  // A world of its own, stopped halfway: what is answered after that came from the cache.
  it('reuses an answer for its TTL (clamped), shares concurrent lookups, and asks again once it expired', async () => {
    const own = await startDnssec({ signed: ['mx A 127.0.0.1', 'mx AAAA ::1', `_25._tcp.mx TLSA 3 1 1 ${hash('own')}`, 'none A 127.0.0.1'] });
    let now = 1_000_000;
    const cached = new DnsTlsaLookup({ servers: [own.resolver], timeoutMs: 2000, tries: 1, now: () => now, cacheTtlMs: 120_000 });
    const [first, again] = await Promise.all([cached.lookup('mx.dane.test', 25), cached.lookup('MX.dane.test.', 25)]);
    expect(again).toBe(first);
    expect(first).toMatchObject({ secure: true, records: [{ data: hash('own') }] });
    const none = await cached.lookup('none.dane.test', 25);
    expect(none).toMatchObject({ secure: true, records: [] });
    await own.stop();

    // mx: TTL 300 s (A, AAAA, TLSA), clamped to the 120 s maximum; "none" lasts the SOA's negative 60 s
    // (a resolver's cache counts TTLs down: check well inside them, then just past them)
    now += 50_000;
    expect(await cached.lookup('mx.dane.test', 25)).toBe(first);
    expect(await cached.lookup('none.dane.test', 25)).toBe(none);
    // another port is another question
    await expect(cached.lookup('mx.dane.test', 465)).rejects.toMatchObject({ code: 'ETLSALOOKUP' });
    now += 11_000;
    await expect(cached.lookup('none.dane.test', 25)).rejects.toMatchObject({ code: 'ETLSALOOKUP' });
    now += 119_000 - 61_000;
    expect(await cached.lookup('mx.dane.test', 25)).toBe(first);
    now += 2_000;
    await expect(cached.lookup('mx.dane.test', 25)).rejects.toMatchObject({ code: 'ETLSALOOKUP', dnsCode: 'ECONNREFUSED' });
  });
});

describe('TLSA records', () => {
  it('parses RDATA, and keeps a record too short to read as an unusable one', () => {
    expect(parseTlsa(Buffer.from([3, 1, 1, 0xab, 0xcd]))).toEqual({ usage: 3, selector: 1, matchingType: 1, data: 'abcd' });
    expect(parseTlsa(Buffer.from([3, 1]))).toEqual({ usage: 255, selector: 255, matchingType: 255, data: '' });
  });

  it('keeps only the records SMTP can use (RFC 7672 3.1)', () => {
    const ok = [
      { usage: 3, selector: 1, matchingType: 1, data: 'a'.repeat(64) },
      { usage: 2, selector: 0, matchingType: 2, data: 'b'.repeat(128) },
      { usage: 3, selector: 0, matchingType: 0, data: '3082' },
    ];
    const unusable = [
      { usage: 1, selector: 1, matchingType: 1, data: 'a'.repeat(64) }, // PKIX-EE
      { usage: 0, selector: 1, matchingType: 1, data: 'a'.repeat(64) }, // PKIX-TA
      { usage: 3, selector: 2, matchingType: 1, data: 'a'.repeat(64) },
      { usage: 3, selector: 1, matchingType: 3, data: 'a'.repeat(64) },
      { usage: 3, selector: 1, matchingType: 1, data: 'a'.repeat(62) }, // a SHA-256 digest one byte short
      { usage: 3, selector: 1, matchingType: 0, data: '' },
      { usage: 255, selector: 255, matchingType: 255, data: '' },
    ];
    expect(usableTlsa([...ok, ...unusable])).toEqual(ok);
  });
});
