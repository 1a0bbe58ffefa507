// Until bin/commands/index.ts registers `lb`, the CLI test bundles this entry
// (the same verb code as `volley lb`) the way bin/build.mjs bundles bin/volley.ts.
import { Command } from 'commander';
import { registerLb } from '../../../bin/commands/lb';

const program = new Command('volley');
registerLb(program);
program.parseAsync(process.argv).catch((err: Error & { code?: string }) => {
  process.stderr.write(`volley: ${err.message}${err.code ? ` (${err.code})` : ''}\n`);
  process.exit(1);
});
