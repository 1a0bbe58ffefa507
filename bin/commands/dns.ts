import { Command, InvalidArgumentError } from 'commander';

// Route 53 code loads when a dns command runs, not whenever the CLI starts.
const runtime = () => import('../../runtime/dns');

function weight(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 255) throw new InvalidArgumentError('expected a weight from 0 to 255');
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

// Route 53 is a global service answered from us-east-1.
const client = async () => new (await import('@aws-sdk/client-route-53')).Route53Client({ region: 'us-east-1' });

export function registerDns(program: Command): void {
  const dns = program.command('dns').description('Route 53 weighted records in front of the load balancers');

  dns
    .command('weight')
    .description('set one load balancer\'s weight: 0 takes it out of rotation, >0 puts it back')
    .argument('<load-balancer>', 'the load balancer\'s name (its records\' set identifier)')
    .argument('<weight>', 'new weight, 0-255', weight)
    .requiredOption('--zone-id <id>', 'hosted zone id')
    .option('--name <record>', 'only this record name (repeatable); default all of the load balancer\'s records', collect, [])
    .option('--force', 'allow leaving a name with every weight at 0', false)
    .option('--no-wait', 'return without waiting for the change to reach every Route 53 server')
    .action(async (setIdentifier: string, newWeight: number, flags: { zoneId: string; name: string[]; force: boolean; wait: boolean }) => {
      const result = await (await runtime()).setWeight(await client(), {
        zoneId: flags.zoneId,
        setIdentifier,
        weight: newWeight,
        names: flags.name.length > 0 ? flags.name : undefined,
        force: flags.force,
        waitMs: flags.wait ? 5 * 60_000 : undefined,
      });
      if (result.changes.length === 0) process.stdout.write(`${setIdentifier}: already at weight ${newWeight}\n`);
      for (const c of result.changes) process.stdout.write(`${c.name} ${c.type} ${setIdentifier}: ${c.from} -> ${c.to}\n`);
      if (result.changeId) process.stdout.write(`change ${result.changeId} ${result.insync ? 'INSYNC' : 'PENDING'}\n`);
    });

  dns
    .command('weights')
    .description('list the weighted records of a zone')
    .requiredOption('--zone-id <id>', 'hosted zone id')
    .action(async (flags: { zoneId: string }) => {
      for (const r of await (await runtime()).listWeights(await client(), flags.zoneId)) process.stdout.write(`${r.name} ${r.type} ${r.setIdentifier} ${r.weight}\n`);
    });
}
