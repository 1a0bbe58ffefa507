// Bundles the `volley` CLI into one file (dist/volley.js) that the local fleet,
// the tests and the instance asset all run: one artefact, tested as shipped.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['bin/volley.ts'],
  outfile: 'dist/volley.js',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  sourcemap: 'linked',
  banner: { js: '#!/usr/bin/env node' },
  // pino loads its transports by path at run time; keep it out of the bundle's
  // dynamic-require analysis by marking nothing else external.
  external: ['aws-cdk-lib', 'constructs'],
  logLevel: 'warning',
});
chmodSync('dist/volley.js', 0o755);
