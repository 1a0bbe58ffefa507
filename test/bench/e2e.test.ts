// An end-to-end bench setup whose mail the MTA defers fails at once, with the
// reason, instead of waiting for a sink that will not get it (issue 14, item 10).
import { measureEndToEnd } from './e2e';

test('a setup whose mail is deferred fails its warm-up with the reason and the counts', async () => {
  // STARTTLS required for the sink's domain, which the held sink does not
  // offer: every attempt is deferred, as the closed-before-greeting ones were.
  const run = measureEndToEnd({
    messages: 20,
    sessions: 2,
    sizeBytes: 512,
    warmupMessages: 10,
    heldSinkMs: 0,
    label: 'deferred setup',
    extraConfig: async () => 'tls_policies:\n  - { domain: bench.example, policy: required }\n',
  });
  await expect(run).rejects.toMatchObject({
    code: 'BENCH_UNDELIVERED',
    message: expect.stringMatching(/^deferred setup, warm-up: the MTA did not deliver every message.*the sink has 0 of 10; attempt log: 0 delivered, [1-9]\d* deferred.*tls-required/),
  });
});
