// PLACEHOLDER: replaced by the webhook branch. Exists only so the sink
// registry type-checks in the queue branch; the lead replaces it at merge.
import type { WebhookSinkConfig } from '../../../shared/config/events';
import { VolleyError } from '../../../shared/errors';
import type { EventSink, SinkDeps } from '../types';

export function createWebhookSink(config: WebhookSinkConfig, deps: SinkDeps): EventSink {
  void deps;
  throw new VolleyError('ENOTBUILT', `event sink "${config.name}": the webhook sink is not built in this branch`);
}
