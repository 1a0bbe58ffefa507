// The old tls_policies names on the ladder, and the check a hop runs on a
// requirement it receives: anything it could not enforce as asked is refused.
import { requirementOf, requirementProblem } from '../../../../runtime/shared/smtp/tls-requirement';

test('the old policy names map onto the ladder: opportunistic is may, required is encrypt (no verification), never is none', () => {
  expect(requirementOf('opportunistic')).toEqual({ mode: 'may', policy: 'may' });
  expect(requirementOf('required')).toEqual({ mode: 'encrypt', policy: 'encrypt' });
  expect(requirementOf('never')).toEqual({ mode: 'none', policy: 'none' });
  expect(requirementOf('encrypt')).toEqual({ mode: 'encrypt', policy: 'encrypt' });
});

test('a well-formed requirement passes; each malformed one gets its reason', () => {
  const tlsa = [{ usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32) }];
  expect(requirementProblem({ mode: 'may', policy: 'may' })).toBeUndefined();
  expect(requirementProblem({ mode: 'verify', policy: 'mta-sts', names: ['mx.example.test'], testing: true })).toBeUndefined();
  expect(requirementProblem({ mode: 'dane', policy: 'dane', names: ['mx.example.test'], tlsa })).toBeUndefined();
  const bad: [unknown, string][] = [
    [undefined, 'tls is not a TLS requirement object'],
    ['required', 'tls is not a TLS requirement object'],
    [{ mode: 'may' }, 'tls.policy is not one of dane, mta-sts, verify, encrypt, may, none'],
    [{ mode: 'verify', policy: 'verify', names: [] }, 'tls.mode verify needs tls.names'],
    [{ mode: 'verify', policy: 'verify', names: [''] }, 'tls.names is not a list of host names'],
    [{ mode: 'may', policy: 'may', testing: 'yes' }, 'tls.testing is not a boolean'],
    [{ mode: 'dane', policy: 'dane' }, 'tls.mode dane needs tls.tlsa'],
    [{ mode: 'dane', policy: 'dane', tlsa: [{ ...tlsa[0], usage: 256 }] }, 'tls.tlsa usage is not 0-255'],
    [{ mode: 'dane', policy: 'dane', tlsa: [{ ...tlsa[0], data: 'abc' }] }, 'tls.tlsa data is not hex'],
    [{ mode: 'dane', policy: 'dane', tlsa: [null] }, 'tls.tlsa holds a record that is not an object'],
  ];
  for (const [t, why] of bad) expect([t, requirementProblem(t)]).toEqual([t, why]);
});
