// A TCP relay on loopback that can go silent: freeze() stops every byte and
// every close, both ways, on the connections it carries and on those it
// accepts meanwhile, while keeping their sockets open. To either end that is
// a peer whose host died or whose cable was pulled (what SIGSTOP does to a
// process, without a stopped process left to resume). thaw() lets new
// connections through again ("the network is back"); the frozen ones stay
// silent, as a connection through a dead host does. `onData` sees every
// chunk before it is forwarded (which way it goes, and the bytes), so a test
// can act at a chosen moment of a conversation: freeze as an answer comes
// back, or kill a client while its request is on the way.
import { connect, createServer, type Socket } from 'node:net';
import { listen } from '../../runtime/shared/listen';

export interface FreezableRelay {
  port: number;
  /** Connections accepted so far. */
  accepted(): number;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export type RelayDirection = 'up' | 'down';

export async function startFreezableRelay(
  target: { host: string; port: number },
  onData?: (direction: RelayDirection, chunk: Buffer, connection: number) => void,
): Promise<FreezableRelay> {
  const sockets = new Set<Socket>();
  let frozen = false;
  let accepted = 0;
  // Pairs frozen for good: a frozen connection never speaks again.
  const dead = new WeakSet<Socket>();
  const pipe = (from: Socket, to: Socket, direction: RelayDirection, connection: number): void => {
    from.on('data', (chunk: Buffer) => {
      if (!dead.has(from)) onData?.(direction, chunk, connection);
      if (frozen) dead.add(from).add(to);
      if (!dead.has(from) && !to.destroyed) to.write(chunk);
    });
    from.on('close', () => {
      if (frozen) dead.add(from).add(to);
      if (!dead.has(from)) to.destroy();
    });
    from.on('error', () => undefined);
  };
  const server = createServer((client) => {
    accepted++;
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
      if (frozen) dead.add(s);
    }
    pipe(client, upstream, 'up', accepted);
    pipe(upstream, client, 'down', accepted);
  });
  const port = await listen(server, 0, '127.0.0.1');
  return {
    port,
    accepted: () => accepted,
    freeze: () => {
      frozen = true;
      for (const s of sockets) dead.add(s);
    },
    thaw: () => {
      frozen = false;
    },
    close: () =>
      new Promise<void>((done) => {
        for (const s of sockets) s.destroy();
        server.close(() => done());
      }),
  };
}
