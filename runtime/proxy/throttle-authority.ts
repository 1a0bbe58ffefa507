// What the proxy's control channel asks for throttle decisions. In one
// process that is the ClusterThrottles itself; in a worker of `volley proxy
// --workers N` it is WorkerThrottles, which asks the primary's one
// ClusterThrottles over IPC, so the node keeps a single count per key
// whichever worker an MTA's control link landed on.
import type { ClusterLimits, MessagePermit } from '../shared/throttle/cluster-throttles';

export interface ThrottleAuthority {
  tryConnection(mta: string, key: string, limits: ClusterLimits, reclaim?: boolean): boolean | Promise<boolean>;
  tryMessage(mta: string, key: string, limits: ClusterLimits): MessagePermit | Promise<MessagePermit>;
  releaseConnection(mta: string, key: string): void;
  forget(mta: string): void;
}
