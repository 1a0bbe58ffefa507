import { connect, createServer, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { endSocket } from '../../../runtime/shared/end-socket';

/** A server whose accepted sockets stay half-open (they never end their side). */
async function holdingServer(): Promise<{ server: Server; port: number; accepted: Promise<Socket> }> {
  const server = createServer({ allowHalfOpen: true });
  const accepted = once(server, 'connection').then(([s]) => s as Socket);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port, accepted };
}

async function connected(port: number): Promise<Socket> {
  const s = connect({ port, host: '127.0.0.1' });
  await once(s, 'connect');
  return s;
}

describe('endSocket', () => {
  test('the peer gets the last data, then the FIN', async () => {
    const { server, port, accepted } = await holdingServer();
    const ours = await connected(port);
    const peer = await accepted;
    let got = '';
    peer.on('data', (d: Buffer) => (got += d.toString()));
    const ended = once(peer, 'end');
    endSocket(ours, 5000, '221 bye\r\n');
    await ended;
    expect(got).toBe('221 bye\r\n');
    peer.destroy();
    server.close();
  });

  test('a peer that never closes its side is cut off after the linger', async () => {
    const { server, port, accepted } = await holdingServer();
    const ours = await connected(port);
    const peer = await accepted;
    peer.on('data', () => undefined);
    const t0 = Date.now();
    endSocket(ours, 300);
    await once(ours, 'close');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    peer.destroy();
    server.close();
  });

  test('a peer that closes at once releases the socket then, not at the end of the linger', async () => {
    const { server, port, accepted } = await holdingServer();
    const ours = await connected(port);
    const peer = await accepted;
    peer.on('end', () => peer.end());
    const set = jest.spyOn(global, 'setTimeout');
    const clear = jest.spyOn(global, 'clearTimeout');
    const t0 = Date.now();
    endSocket(ours, 60_000);
    const timer = set.mock.results[set.mock.results.length - 1].value as NodeJS.Timeout;
    await once(ours, 'close');
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(clear).toHaveBeenCalledWith(timer);
    set.mockRestore();
    clear.mockRestore();
    server.close();
  });
});
