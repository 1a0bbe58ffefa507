import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { endSocket } from '../../../runtime/shared/end-socket';
import { listen } from '../../../runtime/shared/listen';

/** A connected pair: ours, and the server's side, which stays half-open (it never ends on its own). */
async function pair(): Promise<{ ours: Socket; peer: Socket; close: () => void }> {
  const server = createServer({ allowHalfOpen: true });
  const accepted = once(server, 'connection').then(([s]) => s as Socket);
  const ours = connect({ port: await listen(server, 0, '127.0.0.1'), host: '127.0.0.1' });
  await once(ours, 'connect');
  const peer = await accepted;
  return { ours, peer, close: () => (peer.destroy(), server.close()) };
}

describe('endSocket', () => {
  test('the peer gets the last data, then the FIN', async () => {
    const { ours, peer, close } = await pair();
    let got = '';
    peer.on('data', (d: Buffer) => (got += d.toString()));
    const ended = once(peer, 'end');
    endSocket(ours, 5000, '221 bye\r\n');
    await ended;
    expect(got).toBe('221 bye\r\n');
    close();
  });

  test('a peer that never closes its side is cut off after the linger', async () => {
    const { ours, peer, close } = await pair();
    peer.on('data', () => undefined);
    const t0 = Date.now();
    endSocket(ours, 300);
    await once(ours, 'close');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    close();
  });

  test('a peer that closes at once releases the socket then, not at the end of the linger', async () => {
    const { ours, peer, close } = await pair();
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
    close();
  });
});
