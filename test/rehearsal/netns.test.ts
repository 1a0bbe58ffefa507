// The namespace host: an address on the namespace's loopback serves a client
// inside it and is not an address of the root namespace; units run inside it
// through the runner's wrap; loop devices and namespaces are removed, also
// those a killed run left behind.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { waitUntil } from '../helpers/proxy-fixtures';
import { tempDir } from '../helpers/tmp';
import { createLoopDevice, createNetns, type Netns, removeStale } from './netns';
import { UnitRunner } from './unit-runner';

const dir = tempDir('volley-netns-');
let ns: Netns;

beforeAll(() => {
  ns = createNetns(['10.99.0.1/32', '203.0.113.10/32']);
});
afterAll(() => ns.close());

const SERVER = `
const net = require('node:net');
const server = net.createServer((c) => c.end('hello from ' + c.localAddress + '\\n'));
server.listen(7000, '10.99.0.1', () => console.log('listening'));
`;
const CLIENT = `
const net = require('node:net');
const c = net.connect({ host: '10.99.0.1', port: 7000, localAddress: '203.0.113.10' });
let got = '';
c.on('data', (d) => (got += d));
c.on('end', () => console.log(got.trim() + ' seen from ' + c.localAddress));
`;

it('a server on a namespace address answers a client inside the namespace; the root namespace does not have the address', async () => {
  expect(ns.addresses()).toEqual(['127.0.0.1', '10.99.0.1', '203.0.113.10']);
  const server = ns.spawn([process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    let out = '';
    server.stdout?.on('data', (d: Buffer) => (out += d));
    await waitUntil(() => out.includes('listening'));
    const client = await ns.exec([process.execPath, '-e', CLIENT]);
    expect(client.stdout.trim()).toBe('hello from 10.99.0.1 seen from 203.0.113.10');
  } finally {
    server.kill('SIGKILL');
  }
  // In the root namespace the address is not local: nothing can bind it (and no packet is sent to find out).
  const bind = createServer();
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
    bind.once('error', resolve);
    bind.listen(7000, '10.99.0.1', () => resolve(Object.assign(new Error('bound'), { code: 'BOUND' })));
  });
  bind.close();
  expect(err.code).toBe('EADDRNOTAVAIL');
  expect(execFileSync('ip', ['route', 'get', '10.99.0.1'], { encoding: 'utf8' })).not.toMatch(/^local /);
});

it('a unit run through the runner with the namespace\'s wrap sees the namespace\'s addresses', async () => {
  const units = join(dir, 'units');
  mkdirSync(units);
  writeFileSync(join(units, 'where.service'), '[Service]\nType=oneshot\nExecStart=/usr/sbin/ip -4 -o address show dev lo\n');
  const runner = new UnitRunner({ unitDirs: [units], wrap: ns.wrap, id: `netns-test-${process.pid}` });
  try {
    await runner.start('where');
    expect(runner.journal('where')).toContain('inet 203.0.113.10/32');
  } finally {
    await runner.close();
  }
});

it('a loop device is attached and detached; its image is removed', () => {
  const loop = createLoopDevice(dir, 16);
  expect(loop.device).toMatch(/^\/dev\/loop\d+$/);
  expect(execFileSync('losetup', ['--noheadings', '--output', 'BACK-FILE', loop.device], { encoding: 'utf8' }).trim()).toBe(loop.image);
  loop.detach();
  expect(existsSync(loop.image)).toBe(false);
  expect(execFileSync('losetup', ['--associated', loop.image], { encoding: 'utf8' }).trim()).toBe('');
});

it('removes a namespace and a loop device left by a run that was killed', () => {
  // A pid that has exited: what a killed run's names carry.
  const dead = spawnSync('/bin/true').pid as number;
  const name = `volley-rh-${dead}-1`;
  execFileSync('ip', ['netns', 'add', name]);
  const image = join(dir, `volley-rh-loop-${dead}-1.img`);
  execFileSync('truncate', ['--size', '16M', image]);
  const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  try {
    const removed = removeStale();
    expect(removed).toEqual(expect.arrayContaining([name, device]));
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(name);
    expect(existsSync(image)).toBe(false);
  } finally {
    spawnSync('ip', ['netns', 'del', name]);
    spawnSync('losetup', ['--detach', device]);
  }
  // Our own namespace belongs to a live run: kept.
  expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).toContain(ns.name);
});
