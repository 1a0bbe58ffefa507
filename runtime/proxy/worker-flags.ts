// V8 flags for `volley proxy`'s workers: none, V8's defaults, by measurement
// (VOLLEY_WORKER_V8_FLAGS still overrides them, as for the MTA: see
// runtime/shared/worker-flags.ts).
//
// The MTA's flags (64 MB semi-spaces, a 256 MB initial old generation) pay
// where a worker promotes ~50 KB of message objects per message. A proxy
// worker holds a message only from its frame to the MX's answer: measured
// with the proxy alone (10 MTA sessions through one worker to smtp-sink,
// 3,000 and 20,000 messages, 2 KB, --trace-gc, pairs back to back), its GC
// took 3-9 µs of CPU a message with or without them, and its CPU a message
// was 73/77, 117/130, 61/66, 71/68 µs (defaults/flags): no gain, for 128 MB
// more resident memory per worker.
export const PROXY_WORKER_V8_FLAGS: readonly string[] = [];
