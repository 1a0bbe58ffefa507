// Building and checking TlsRequirement values: the requirement for a plain
// configured mode, the old `tls_policies` names mapped onto the ladder, and the
// check a hop that receives a requirement from elsewhere (the proxy) runs on it.
import type { TlsMode, TlsRequirement } from './connector';

export const TLS_MODES: readonly TlsMode[] = ['none', 'may', 'encrypt', 'verify', 'dane'];
const SOURCES: readonly string[] = ['dane', 'mta-sts', 'verify', 'encrypt', 'may', 'none'];

/** The pre-#19 `tls_policies` names, still accepted: required is encrypt (no verification), never is none. */
export type LegacyTlsPolicy = 'opportunistic' | 'required' | 'never';
const LEGACY: Record<LegacyTlsPolicy, 'may' | 'encrypt' | 'none'> = { opportunistic: 'may', required: 'encrypt', never: 'none' };

export function isLegacyTlsPolicy(x: unknown): x is LegacyTlsPolicy {
  return typeof x === 'string' && Object.hasOwn(LEGACY, x);
}

/** A requirement decided by configuration alone (no names, no TLSA records to carry). */
export function configuredRequirement(mode: 'none' | 'may' | 'encrypt'): TlsRequirement {
  return { mode, policy: mode };
}

/** Maps a `tls_policies` entry, old name or new, onto the ladder (the config schema has checked the name). */
export function requirementOf(policy: LegacyTlsPolicy | 'none' | 'may' | 'encrypt'): TlsRequirement {
  return configuredRequirement(policy in LEGACY ? LEGACY[policy as LegacyTlsPolicy] : (policy as 'none' | 'may' | 'encrypt'));
}

/**
 * What is wrong with a requirement that came over the wire, or undefined.
 * verify needs the names to check, dane its records: a requirement without
 * them could not be enforced, and enforcing less than asked is the one thing
 * a hop must never do.
 */
export function requirementProblem(t: unknown): string | undefined {
  if (typeof t !== 'object' || t === null || Array.isArray(t)) return 'tls is not a TLS requirement object';
  const r = t as Record<string, unknown>;
  if (!TLS_MODES.includes(r.mode as TlsMode)) return `tls.mode is not one of ${TLS_MODES.join(', ')}`;
  if (!SOURCES.includes(r.policy as string)) return `tls.policy is not one of ${SOURCES.join(', ')}`;
  if (r.testing !== undefined && typeof r.testing !== 'boolean') return 'tls.testing is not a boolean';
  if (r.names !== undefined && (!Array.isArray(r.names) || r.names.length > 64 || r.names.some((n) => typeof n !== 'string' || n.length === 0 || n.length > 255))) return 'tls.names is not a list of host names';
  if (r.mode === 'verify' && (!Array.isArray(r.names) || r.names.length === 0)) return 'tls.mode verify needs tls.names';
  if (r.tlsa !== undefined) {
    if (!Array.isArray(r.tlsa) || r.tlsa.length > 64) return 'tls.tlsa is not a list of TLSA records';
    for (const x of r.tlsa as unknown[]) {
      const rec = x as Record<string, unknown> | null;
      if (typeof rec !== 'object' || rec === null) return 'tls.tlsa holds a record that is not an object';
      for (const k of ['usage', 'selector', 'matchingType'] as const) if (!Number.isInteger(rec[k]) || (rec[k] as number) < 0 || (rec[k] as number) > 255) return `tls.tlsa ${k} is not 0-255`;
      if (typeof rec.data !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(rec.data) || rec.data.length > 8192) return 'tls.tlsa data is not hex';
    }
  }
  if (r.mode === 'dane' && (!Array.isArray(r.tlsa) || r.tlsa.length === 0)) return 'tls.mode dane needs tls.tlsa';
  return undefined;
}
