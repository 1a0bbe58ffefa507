// Bundles the `volley` CLI into one file (dist/volley.js) that the local fleet,
// the tests and the instance asset all run: one artefact, tested as shipped.
import { build } from 'esbuild';
import { chmodSync, readFileSync } from 'node:fs';

// Every npm script builds first, so this is where a wrong Node is caught: the
// bundle is built for, tested on and measured on the Node that engines names.
const wanted = Number(/\d+/.exec(JSON.parse(readFileSync('package.json', 'utf8')).engines.node)[0]);
const running = Number(process.versions.node.split('.')[0]);
if (running < wanted) {
  console.error(`volley build: Node ${wanted} or newer is needed, this is ${process.version} (${process.execPath}).`);
  console.error('On linux-x64 `npm install` puts a pinned one at node_modules/.bin/node, which npm scripts use; elsewhere install it.');
  process.exit(1);
}

await build({
  entryPoints: ['bin/volley.ts'],
  outfile: 'dist/volley.js',
  bundle: true,
  platform: 'node',
  target: `node${wanted}`,
  format: 'cjs',
  sourcemap: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  // pino loads its transports by path at run time; keep it out of the bundle's
  // dynamic-require analysis by marking nothing else external.
  external: ['aws-cdk-lib', 'constructs'],
  logLevel: 'warning',
});
chmodSync('dist/volley.js', 0o755);
