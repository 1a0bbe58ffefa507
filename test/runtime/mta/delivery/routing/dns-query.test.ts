// The raw DNS client's DNSSEC side: the DO bit on the wire, the AD flag and
// RFC 8914 extended errors read back, against a real validating resolver
// (unbound in front of bind9, test/helpers/dnssec.ts). MX routing through it
// is covered by router.test.ts.
import { buildQuery, extendedError, queryDns, queryMx, TYPE_A, TYPE_MX, TYPE_TLSA } from '../../../../../runtime/mta/delivery/routing/dns-query';
import { startDnssec, type DnssecWorld } from '../../../../helpers/dnssec';

/** The OPT record's TTL field (extended rcode, version, flags) at the end of a query built with EDNS. */
const optFlags = (q: Buffer): number => q.readUInt32BE(q.length - 6);

describe('buildQuery', () => {
  it('sets DO in the OPT record for a DNSSEC question, and leaves AD clear in the header', () => {
    const q = buildQuery(1, 'mx1.dane.test', TYPE_TLSA, true, true);
    expect(optFlags(q) & 0x8000).toBe(0x8000);
    expect(q.readUInt16BE(2)).toBe(0x0100);
  });

  it('asks for AD in the header when a server without EDNS leaves no DO bit to set (RFC 6840 5.7)', () => {
    expect(buildQuery(1, 'mx1.dane.test', TYPE_TLSA, false, true).readUInt16BE(2)).toBe(0x0120);
  });

  it('leaves an MX question as it was: no DO, no AD', () => {
    const q = buildQuery(1, 'example.test', TYPE_MX, true, false);
    expect(optFlags(q)).toBe(0);
    expect(q.readUInt16BE(2)).toBe(0x0100);
  });
});

describe('extendedError', () => {
  it('reads the info code and text of an EDE option, and nothing from a message without one', () => {
    // SERVFAIL answer: one question (the root, type A, class IN), then the additional section
    const header = (arcount: number): Buffer => Buffer.from([0, 1, 0x81, 0x82, 0, 1, 0, 0, 0, 0, 0, arcount, 0, 0, 1, 0, 1]);
    const text = Buffer.from('signature crypto failed');
    const option = Buffer.alloc(6);
    option.writeUInt16BE(15, 0); // EDE
    option.writeUInt16BE(2 + text.length, 2);
    option.writeUInt16BE(6, 4); // DNSSEC Bogus
    const opt = Buffer.alloc(11); // root name, type OPT, payload size, TTL 0, rdlength
    opt.writeUInt16BE(41, 1);
    opt.writeUInt16BE(1232, 3);
    opt.writeUInt16BE(option.length + text.length, 9);
    expect(extendedError(Buffer.concat([header(1), opt, option, text]))).toEqual({ infoCode: 6, text: 'signature crypto failed' });
    expect(extendedError(header(0))).toBeUndefined();
  });
});

describe('queryDns through a validating resolver', () => {
  let world: DnssecWorld;
  beforeAll(async () => {
    world = await startDnssec({
      signed: ['mx1 A 127.0.0.1', 'www CNAME mx1', '@ MX 10 mx1'],
      bogus: [{ signed: 'forged A 127.0.0.1', served: 'forged A 127.0.0.2' }],
      insecure: ['mx A 127.0.0.3', '@ MX 10 mx'],
    });
  });
  const ask = (server: string, name: string, dnssec = true) => queryDns(name, TYPE_A, [server], { timeoutMs: 2000, tries: 1, dnssec });

  it('reports AD for a validated answer, with its records after the CNAME chain', async () => {
    const r = await ask(world.resolver, 'www.dane.test');
    expect(r).toMatchObject({ rcode: 'NOERROR', authenticated: true, canonicalName: 'mx1.dane.test', ttl: 300 });
    expect(r.records.map((x) => [...x.data].join('.'))).toEqual(['127.0.0.1']);
  });

  it('reports no AD without the DO bit, nor for an unsigned zone, nor from a server that does not validate', async () => {
    expect((await ask(world.resolver, 'mx1.dane.test', false)).authenticated).toBe(false);
    expect(await ask(world.resolver, 'mx.insecure.dane.test')).toMatchObject({ authenticated: false, records: [{ data: Buffer.from([127, 0, 0, 3]) }] });
    expect((await ask(world.authority, 'mx1.dane.test')).authenticated).toBe(false);
  });

  it('tells a signed MX RRset from an unsigned one when asked with DNSSEC (RFC 7672 2.2.1), and asks plainly otherwise', async () => {
    const options = { timeoutMs: 2000, tries: 1 };
    expect(await queryMx('dane.test', [world.resolver], { ...options, dnssec: true })).toMatchObject({ authenticated: true, mx: [{ exchange: 'mx1.dane.test', preference: 10 }] });
    expect(await queryMx('insecure.dane.test', [world.resolver], { ...options, dnssec: true })).toMatchObject({ authenticated: false, mx: [{ exchange: 'mx.insecure.dane.test' }] });
    expect((await queryMx('dane.test', [world.resolver], options)).authenticated).toBe(false);
  });

  it('reports a validated NXDOMAIN with AD', async () => {
    expect(await ask(world.resolver, 'nowhere.dane.test')).toMatchObject({ rcode: 'NXDOMAIN', authenticated: true, records: [] });
  });

  it('throws ESERVFAIL with the resolver\'s extended error for a bogus answer', async () => {
    await expect(ask(world.resolver, 'forged.dane.test')).rejects.toMatchObject({
      code: 'ESERVFAIL',
      extendedError: { infoCode: 6 },
      message: expect.stringContaining('A forged.dane.test'),
    });
  });
});
