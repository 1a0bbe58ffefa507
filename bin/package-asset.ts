// Assembles the instance runtime: what an instance unpacks as /opt/volley.
//   lib/volley.js        the bundled CLI (dist/volley.js from bin/build.mjs)
//   bin/volley           wrapper that picks the instance's Node
//   bin/volley-config-sync
//   systemd/*.service|timer
//   install.sh           run once by user data
// The Volley config is deliberately not inside: it ships as its own asset so
// that a config change is a `config refresh`, not a new launch template.
//
//   npx tsx bin/package-asset.ts [--out DIR] [--no-build]
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface PackageOptions {
  readonly repoRoot: string;
  readonly outDir?: string;
  /** Run bin/build.mjs first (default). Off only when dist/volley.js is known fresh. */
  readonly build?: boolean;
}

export function packageRuntime(options: PackageOptions): string {
  const root = options.repoRoot;
  const outDir = resolve(root, options.outDir ?? 'dist/asset');
  if (options.build !== false) {
    execFileSync(process.execPath, [join(root, 'bin/build.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const bundle = join(root, 'dist/volley.js');
  if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build`);

  // Build beside the target and swap, so a concurrent reader never sees half a package.
  const staging = `${outDir}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(join(staging, 'lib'), { recursive: true });
  cpSync(bundle, join(staging, 'lib/volley.js'));
  if (existsSync(`${bundle}.map`)) cpSync(`${bundle}.map`, join(staging, 'lib/volley.js.map'));
  cpSync(join(root, 'assets/bin'), join(staging, 'bin'), { recursive: true });
  cpSync(join(root, 'assets/systemd'), join(staging, 'systemd'), { recursive: true });
  cpSync(join(root, 'assets/user-data/install.sh'), join(staging, 'install.sh'));
  for (const name of readdirSync(join(staging, 'bin'))) chmodSync(join(staging, 'bin', name), 0o755);
  chmodSync(join(staging, 'install.sh'), 0o755);

  rmSync(outDir, { recursive: true, force: true });
  renameSync(staging, outDir);
  return outDir;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf('--out');
  const outDir = outIndex >= 0 ? args[outIndex + 1] : undefined;
  const dir = packageRuntime({ repoRoot: resolve(__dirname, '..'), outDir, build: !args.includes('--no-build') });
  process.stdout.write(`${dir}\n`);
}
