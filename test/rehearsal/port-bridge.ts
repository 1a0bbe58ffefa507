// Makes servers of this (host) process reachable inside a network namespace
// at the same address and port: the fake AWS endpoints run in the test's own
// process, which cannot enter the namespace, so one small Node process inside
// it listens on each address:port and relays every connection through a unix
// socket (file system sockets cross network namespaces) to a relay here that
// connects to the real server on loopback. Nothing listens outside loopback.
import { type ChildProcess } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { VolleyError } from '../../runtime/shared/errors';
import { registerExitCleanup } from '../helpers/postfix-tools';
import type { Netns } from './netns';

export interface BridgedPort {
  /** Where it listens inside the namespace. */
  readonly host: string;
  readonly port: number;
  /** The server in this process it reaches (loopback). */
  readonly target: { host: string; port: number };
}

export interface PortBridge {
  close(): Promise<void>;
}

// Inside the namespace: argv pairs "host:port=unixPath"; prints "ready" once every listener is up.
const INSIDE = `const net = require('node:net');
let pending = process.argv.length - 2;
for (const spec of process.argv.slice(2)) {
  const [addr, path] = spec.split('=');
  const at = addr.lastIndexOf(':');
  net.createServer((c) => { const u = net.connect(path); c.pipe(u).pipe(c); c.on('error', () => u.destroy()); u.on('error', () => c.destroy()); })
    .listen(Number(addr.slice(at + 1)), addr.slice(0, at), () => { if (--pending === 0) process.stdout.write('ready\\n'); });
}
`;

export async function bridgePorts(netns: Netns, dir: string, ports: readonly BridgedPort[]): Promise<PortBridge> {
  const relays: Server[] = [];
  const specs: string[] = [];
  for (const [i, p] of ports.entries()) {
    const path = join(dir, `bridge-${process.pid}-${i}.sock`);
    rmSync(path, { force: true });
    const relay = createServer((c) => {
      const t = connect(p.target.port, p.target.host);
      c.pipe(t).pipe(c);
      c.on('error', () => t.destroy());
      t.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve, reject) => relay.once('error', reject).listen(path, () => resolve()));
    relays.push(relay);
    specs.push(`${p.host}:${p.port}=${path}`);
  }
  const script = join(dir, 'bridge-inside.js');
  writeFileSync(script, INSIDE);
  const child: ChildProcess = netns.spawn([process.execPath, script, ...specs], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unregister = registerExitCleanup(() => void child.kill('SIGKILL'));
  const closeRelays = () => Promise.all(relays.map((r) => new Promise<void>((done) => r.close(() => done()))));
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (c: Buffer) => c.toString().includes('ready') && resolve());
      child.once('exit', (code) => reject(new VolleyError('EBRIDGE', `the namespace's port bridge exited (${code}): ${stderr.trim()}`)));
    });
  } catch (err) {
    unregister();
    await closeRelays();
    throw err;
  }
  return {
    close: async () => {
      unregister();
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGKILL');
        await exited;
      }
      await closeRelays();
    },
  };
}
