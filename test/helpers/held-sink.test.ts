import { connect, type Socket } from 'node:net';
import { startHeldSink, type HeldSink } from './held-sink';
import { waitUntil } from './proxy-fixtures';

/** A raw client: collects reply lines with the time each arrived. */
function client(port: number): Promise<{ socket: Socket; lines: { at: number; text: string }[]; next: (n: number) => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const lines: { at: number; text: string }[] = [];
    let rest = '';
    const waiting: { n: number; resolve: () => void }[] = [];
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      rest += d;
      for (let nl = rest.indexOf('\r\n'); nl !== -1; nl = rest.indexOf('\r\n')) {
        lines.push({ at: Date.now(), text: rest.slice(0, nl) });
        rest = rest.slice(nl + 2);
      }
      for (const w of waiting.splice(0)) {
        if (lines.length >= w.n) w.resolve();
        else waiting.push(w);
      }
    });
    socket.once('error', reject);
    socket.once('connect', () =>
      resolve({
        socket,
        lines,
        next: (n) => new Promise<void>((r) => (lines.length >= n ? r() : waiting.push({ n, resolve: r }))),
      }),
    );
  });
}

let sink: HeldSink | undefined;
afterEach(async () => {
  await sink?.stop();
  sink = undefined;
});

test('holds each end-of-data reply, keeps pipelined replies behind it, and counts a message once its 250 is out', async () => {
  sink = await startHeldSink({ holdMs: 600 });
  const c = await client(sink.port);
  await c.next(1);
  expect(c.lines[0].text).toMatch(/^220 /);
  c.socket.write('EHLO me\r\n');
  await c.next(6);
  expect(c.lines.map((l) => l.text)).toContain('250-PIPELINING');
  // One transaction pipelined, its terminator split across two writes, and the next envelope behind the body.
  c.socket.write('MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n');
  await c.next(9);
  expect(c.lines.slice(6).map((l) => l.text.slice(0, 3))).toEqual(['250', '250', '354']);
  const dotAt = Date.now();
  c.socket.write('Subject: x\r\n\r\n..leading dot\r\nbody\r\n.');
  await new Promise((r) => setTimeout(r, 20));
  c.socket.write('\r\nMAIL FROM:<a@x.test>\r\n');
  await new Promise((r) => setTimeout(r, 150));
  expect(sink.messages()).toBe(0); // the dot is in, the reply is held
  await c.next(11);
  expect(c.lines[9].text).toMatch(/^250 2\.0\.0 Ok: queued/);
  expect(c.lines[9].at - dotAt).toBeGreaterThanOrEqual(590);
  expect(c.lines[10].text).toMatch(/^250 /); // the MAIL behind the body waited for it
  expect(c.lines[10].at).toBeGreaterThanOrEqual(c.lines[9].at);
  expect(sink.messages()).toBe(1);
  // An empty body: the "." line right after DATA ends it. Nothing after QUIT is read.
  c.socket.write('RCPT TO:<b@y.test>\r\nDATA\r\n.\r\nQUIT\r\nNOOP\r\n');
  await c.next(15);
  expect(c.lines.slice(11).map((l) => l.text.slice(0, 3))).toEqual(['250', '354', '250', '221']);
  await new Promise((r) => c.socket.once('close', r));
  expect(sink.messages()).toBe(2);
});

test('holds one after another on a connection: the second of two pipelined bodies is answered two holds in', async () => {
  sink = await startHeldSink({ holdMs: 500 });
  const c = await client(sink.port);
  const tx = 'MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\n';
  const t0 = Date.now();
  c.socket.write(`EHLO me\r\n${tx}${tx}`);
  await c.next(14);
  const finals = c.lines.filter((l) => l.text.startsWith('250 2.0.0 Ok: queued'));
  expect(finals).toHaveLength(2);
  expect(finals[0].at - t0).toBeGreaterThanOrEqual(490);
  expect(finals[0].at - t0).toBeLessThan(990);
  expect(finals[1].at - t0).toBeGreaterThanOrEqual(990);
  expect(sink.messages()).toBe(2);
  expect(sink.connections()).toBe(1);
  c.socket.destroy();
});

test('with no hold it answers at once; waitForMessages resolves on the count and times out with it', async () => {
  sink = await startHeldSink({ holdMs: 0 });
  const c = await client(sink.port);
  c.socket.write('HELO me\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\nBOGUS\r\n');
  await sink.waitForMessages(1, 2000);
  await c.next(7);
  expect(c.lines.map((l) => l.text.slice(0, 3))).toEqual(['220', '250', '250', '250', '354', '250', '502']);
  await expect(sink.waitForMessages(2, 100)).rejects.toThrow('1 of 2 messages');
  // A wait still pending when the sink stops ends with it, and leaves no timer behind.
  const pending = sink.waitForMessages(2, 600_000);
  await sink.stop();
  sink = undefined;
  await expect(pending).rejects.toThrow('held sink stopped with 1 of 2 messages');
  c.socket.destroy();
});

test('refuses a negative hold and a connection limit under one', async () => {
  await expect(startHeldSink({ holdMs: -1 })).rejects.toThrow('non-negative');
  await expect(startHeldSink({ holdMs: 0, maxConnections: 0 })).rejects.toThrow('positive integer');
});

// The bench's MTA opens up to 1,000 connections to the sink, by the hundred at
// once, and frees a slot the moment it sends QUIT: the sink can see more than
// its limit open while it has yet to read the old ones' ends.
test('greets every connection of a burst past its limit: the excess waits for a slot, none is closed', async () => {
  sink = await startHeldSink({ holdMs: 300 });
  const burst = 1100; // the default limit is 1,024
  const greeted: Socket[] = [];
  let closedBeforeGreeting = 0;
  const all: Socket[] = [];
  for (let i = 0; i < burst; i++) {
    const s = connect(sink.port, '127.0.0.1');
    all.push(s);
    let got = false;
    s.setEncoding('latin1');
    s.once('data', (d: string) => {
      if (!d.startsWith('220 ')) return;
      got = true;
      greeted.push(s);
    });
    s.on('error', () => undefined); // counted at close
    s.once('close', () => {
      if (!got) closedBeforeGreeting++;
    });
  }
  const state = (): string => `${greeted.length} greeted, ${closedBeforeGreeting} closed before a greeting`;
  await waitUntil(() => greeted.length + closedBeforeGreeting >= 1024, 30_000, state);
  expect(closedBeforeGreeting).toBe(0);
  // 76 of the first QUIT: as many of the waiting are greeted.
  for (const s of greeted.slice(0, burst - 1024)) s.write('QUIT\r\n');
  await waitUntil(() => greeted.length + closedBeforeGreeting >= burst, 30_000, state);
  expect(closedBeforeGreeting).toBe(0);
  expect(greeted).toHaveLength(burst);
  expect(sink.connections()).toBe(burst);
  expect(sink.waiting()).toBe(0);
  for (const s of all) s.destroy();
});

test('a connection waiting for a slot is served once one frees, with what it sent meanwhile; one that leaves while waiting gives up its place', async () => {
  sink = await startHeldSink({ holdMs: 0, maxConnections: 1 });
  const first = await client(sink.port);
  await first.next(1);
  const leaving = await client(sink.port);
  const second = await client(sink.port);
  await waitUntil(() => sink!.waiting() === 2);
  leaving.socket.destroy();
  await waitUntil(() => sink!.waiting() === 1);
  // Pipelined before its greeting: answered once it is served, in order.
  second.socket.write('HELO me\r\nMAIL FROM:<>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nhi\r\n.\r\n');
  first.socket.write('QUIT\r\n');
  await second.next(6);
  expect(second.lines.map((l) => l.text.slice(0, 3))).toEqual(['220', '250', '250', '250', '354', '250']);
  expect(leaving.lines).toHaveLength(0);
  expect(sink.messages()).toBe(1);
  expect(sink.waiting()).toBe(0);
  second.socket.destroy();
});
