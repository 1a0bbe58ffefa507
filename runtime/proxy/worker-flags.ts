// V8 flags for `volley proxy`'s workers (VOLLEY_WORKER_V8_FLAGS overrides
// them, as for the MTA: see runtime/shared/worker-flags.ts).
export const PROXY_WORKER_V8_FLAGS: readonly string[] = [];
