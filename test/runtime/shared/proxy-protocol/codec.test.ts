import { DEFAULT_MAX_FRAME, FrameDecoder, PRE_AUTH_MAX_FRAME, ProtocolError, encodeFrame } from '../../../../runtime/shared/proxy-protocol/codec';

test('a frame with a header and a binary body round-trips', () => {
  const body = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x2e]);
  const wire = encodeFrame({ t: 'transaction', from: 'a@b.test', to: ['c@d.test'] }, body);
  expect(wire.readUInt32BE(0)).toBe(wire.length - 4);
  const frames = new FrameDecoder(DEFAULT_MAX_FRAME).push(wire);
  expect(frames).toHaveLength(1);
  expect(frames[0].header).toEqual({ t: 'transaction', from: 'a@b.test', to: ['c@d.test'] });
  expect(frames[0].body).toEqual(body);
});

test('a header with non-ASCII text (SMTPUTF8 addresses, a reply in UTF-8) is length-prefixed in bytes, not characters', () => {
  // encodeFrame writes the header into one buffer it sized itself: a length
  // counted in UTF-16 units would cut the header and shift the body.
  const header = { t: 'transaction', from: 'josé@exämple.test', to: ['日本@例え.test'] };
  const body = Buffer.from('Subject: ü\r\n\r\nbody\r\n');
  const wire = encodeFrame(header, body);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  expect(wire.readUInt32BE(4)).toBe(json.length);
  expect(wire.readUInt32BE(0)).toBe(4 + json.length + body.length);
  const [frame] = new FrameDecoder(DEFAULT_MAX_FRAME).push(wire);
  expect(frame.header).toEqual(header);
  expect(frame.body).toEqual(body);
  expect(new FrameDecoder().push(encodeFrame({ t: 'result', text: 'ok ✓' }))[0]).toEqual({ header: { t: 'result', text: 'ok ✓' } });
});

test('frames split byte by byte, and several in one chunk, decode in order', () => {
  const wire = Buffer.concat([encodeFrame({ t: 'ping' }), encodeFrame({ t: 'hello', version: 1, nonce: 'x' }), encodeFrame({ t: 'x' }, Buffer.from('body'))]);
  const d = new FrameDecoder();
  const got = [];
  for (const byte of wire) got.push(...d.push(Buffer.from([byte])));
  expect(got.map((f) => f.header.t)).toEqual(['ping', 'hello', 'x']);
  expect(got[0].body).toBeUndefined();
  expect(got[2].body?.toString()).toBe('body');
  expect(new FrameDecoder().push(wire).map((f) => f.header.t)).toEqual(['ping', 'hello', 'x']);
});

test('a large body (5 MB) arriving in chunks', () => {
  const body = Buffer.alloc(5 * 1024 * 1024, 0x61);
  const wire = encodeFrame({ t: 'transaction' }, body);
  const d = new FrameDecoder(DEFAULT_MAX_FRAME);
  const frames = [];
  for (let i = 0; i < wire.length; i += 65536) frames.push(...d.push(wire.subarray(i, i + 65536)));
  expect(frames).toHaveLength(1);
  expect(frames[0].body!.equals(body)).toBe(true);
});

test('before authentication a frame is at most 4 KiB', () => {
  const big = encodeFrame({ t: 'hello', pad: 'x'.repeat(PRE_AUTH_MAX_FRAME) });
  expect(() => new FrameDecoder().push(big)).toThrow(ProtocolError);
  // The length alone is enough to refuse: no waiting for 4 GB to arrive.
  expect(() => new FrameDecoder().push(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(/out of range/);
});

test('malformed headers are refused', () => {
  const frame = (header: Buffer, headerLength = header.length): Buffer => {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(4 + header.length, 0);
    p.writeUInt32BE(headerLength, 4);
    return Buffer.concat([p, header]);
  };
  expect(() => new FrameDecoder().push(frame(Buffer.from('not json')))).toThrow(/not JSON/);
  expect(() => new FrameDecoder().push(frame(Buffer.from('[1,2]')))).toThrow(/type/);
  expect(() => new FrameDecoder().push(frame(Buffer.from('{"x":1}')))).toThrow(/type/);
  expect(() => new FrameDecoder().push(frame(Buffer.from('{"t":"a"}'), 99))).toThrow(/header length/);
  expect(() => new FrameDecoder().push(Buffer.from([0, 0, 0, 2, 0, 0]))).toThrow(/out of range/);
});
