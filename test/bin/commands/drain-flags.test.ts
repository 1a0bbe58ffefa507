// `volley drain`'s flags as parsed (no drain runs: a preAction hook stops
// every parse that succeeds before the action): the give-up bounds must leave
// a destination at least a second send (--max-attempts a whole number >= 2,
// --give-up-after >= 1s), and a bad value is refused naming its flag.
import { Command, CommanderError } from 'commander';
import { registerDrain } from '../../../bin/commands/drain';

class Parsed extends Error {}

/** Parses `volley drain 127.0.0.1:1 ...args`: resolves with the flags it would run with, or rejects with commander's error and what it printed. */
async function parse(args: string[]): Promise<Record<string, unknown>> {
  let printed = '';
  let flags: Record<string, unknown> = {};
  const program = new Command('volley').exitOverride().configureOutput({ writeErr: (s) => (printed += s), writeOut: () => undefined });
  program.hook('preAction', (_root, action) => {
    flags = action.opts();
    throw new Parsed();
  });
  registerDrain(program);
  try {
    await program.parseAsync(['drain', '127.0.0.1:1', ...args], { from: 'user' });
  } catch (err) {
    if (err instanceof Parsed) return flags;
    if (err instanceof CommanderError) throw new Error(`${err.code}: ${printed}`);
    throw err;
  }
  throw new Error('the action would have run');
}

test.each([['0s'], ['0ms'], ['999ms']])('--give-up-after %s is refused, naming the flag (one failure would give a destination up)', async (value) => {
  await expect(parse(['--give-up-after', value])).rejects.toThrow(/commander\.invalidArgument: error: option '--give-up-after <duration>' argument '.*' is invalid\. must be at least 1s/);
});

test.each([['1'], ['0'], ['1e3'], ['0x10'], ['3.0'], ['2.5'], ['-3'], ['ten']])('--max-attempts %s is refused, naming the flag (a whole number from 2)', async (value) => {
  await expect(parse(['--max-attempts', value])).rejects.toThrow(/commander\.invalidArgument: error: option '--max-attempts <n>' argument '.*' is invalid\. must be a whole number from 2 to 1000000/);
});

test('the smallest sane bounds are taken as given', async () => {
  expect(await parse(['--max-attempts', '2', '--give-up-after', '1s'])).toMatchObject({ maxAttempts: 2, giveUpAfter: 1000 });
  expect(await parse(['--max-attempts', '1000', '--give-up-after', '10m'])).toMatchObject({ maxAttempts: 1000, giveUpAfter: 600_000 });
});

test('the other counts take plain digits only', async () => {
  await expect(parse(['--batch-size', '1e3'])).rejects.toThrow(/option '--batch-size <n>' argument '1e3' is invalid/);
  await expect(parse(['--concurrency', '0x10'])).rejects.toThrow(/option '--concurrency <n>' argument '0x10' is invalid/);
  expect(await parse(['--batch-size', '1000', '--concurrency', '16'])).toMatchObject({ batchSize: 1000, concurrency: 16 });
});
