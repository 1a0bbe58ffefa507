import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

// The independent verifier: Debian's python3-dkim (dkimpy, the module behind
// /usr/bin/dkimverify), which verifies rsa-sha256 and, with PyNaCl, ed25519-sha256
// (RFC 8463, dkimpy >= 1.0). Called through /usr/bin/python3 explicitly, as
// dkimverify's own shebang does: a `python3` earlier on PATH (pyenv) need not have
// the Debian packages.
export const DKIM_PYTHON = '/usr/bin/python3';

// Verifies every DKIM-Signature of every message, answering DNS from `records`
// (name without trailing dot -> TXT text) instead of the network.
const SCRIPT = String.raw`
import base64, json, sys
import dkim
try:
    import nacl.signing  # dkimpy needs PyNaCl for ed25519
    has_nacl = True
except ImportError:
    has_nacl = False

req = json.load(open(sys.argv[1]))
records = {k.lower(): v.encode() for k, v in req['records'].items()}

def dnsfunc(name, timeout=5):
    n = name.decode().rstrip('.').lower()
    return records.get(n)

out = []
for m in req['messages']:
    msg = base64.b64decode(m)
    n = sum(1 for x, _ in dkim.DKIM(msg).headers if x.lower() == b'dkim-signature')
    sigs = []
    for i in range(n):
        d = dkim.DKIM(msg, minkey=1024)
        try:
            ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
            err = None
        except Exception as e:
            ok = False
            err = '%s: %s' % (type(e).__name__, e)
        sigs.append({'ok': ok,
                     'd': (getattr(d, 'domain', None) or b'').decode(),
                     's': (getattr(d, 'selector', None) or b'').decode(),
                     'a': (getattr(d, 'signature_fields', None) or {}).get(b'a', b'').decode(),
                     'error': err})
    # dkim.verify() itself (the first signature), as dkimverify runs it.
    first = bool(dkim.verify(msg, dnsfunc=dnsfunc, minkey=1024)) if n else False
    out.append({'signatures': sigs, 'verify': first})
print(json.dumps({'version': getattr(dkim, '__version__', None), 'ed25519': has_nacl, 'results': out}))
`;

export interface DkimSigResult {
  ok: boolean;
  d: string;
  s: string;
  a: string;
  error: string | null;
}

export interface DkimVerifyOutput {
  version: string | null;
  /** PyNaCl importable, so dkimpy can verify ed25519-sha256. */
  ed25519: boolean;
  /** Per message: each signature top to bottom, and what dkim.verify() said. */
  results: { signatures: DkimSigResult[]; verify: boolean }[];
}

/** One python run for a whole batch (interpreter start-up is most of the cost). */
export async function dkimVerify(dir: string, messages: Buffer[], records: Record<string, string>): Promise<DkimVerifyOutput> {
  const script = join(dir, 'dkim_verify.py');
  const input = join(dir, `dkim-verify-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(script, SCRIPT);
  writeFileSync(input, JSON.stringify({ records, messages: messages.map((m) => m.toString('base64')) }));
  const { stdout } = await execFileAsync(DKIM_PYTHON, [script, input], { timeout: 15_000, maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(stdout) as DkimVerifyOutput;
}
