// The lb's Prometheus metrics, in a registry of its own (one per lb instance,
// so tests can run several in one process).
import { Counter, Gauge, Registry } from 'prom-client';

export class LbMetrics {
  readonly registry = new Registry();
  readonly connections = new Counter({ name: 'volley_lb_connections_total', help: 'Client connections accepted', labelNames: ['listener'], registers: [this.registry] });
  readonly rejected = new Counter({
    name: 'volley_lb_connections_rejected_total',
    help: 'Client connections turned away (max_connections: over the limit; no_backend: every backend failed)',
    labelNames: ['listener', 'reason'],
    registers: [this.registry],
  });
  readonly retries = new Counter({ name: 'volley_lb_retries_total', help: 'Client connections moved on to another backend after a failure', labelNames: ['listener'], registers: [this.registry] });
  readonly backendFailures = new Counter({
    name: 'volley_lb_backend_failures_total',
    help: 'Failed backend connections (real traffic and health checks) by reason',
    labelNames: ['listener', 'backend', 'reason'],
    registers: [this.registry],
  });
  readonly checks = new Counter({ name: 'volley_lb_health_checks_total', help: 'Health checks by result', labelNames: ['listener', 'backend', 'result'], registers: [this.registry] });
  readonly backendUp = new Gauge({ name: 'volley_lb_backend_up', help: '1 if the backend is in the pool, 0 if taken out', labelNames: ['listener', 'backend'], registers: [this.registry] });
  readonly backendActive = new Gauge({ name: 'volley_lb_backend_active_connections', help: 'Sessions (and attempts) on the backend now', labelNames: ['listener', 'backend'], registers: [this.registry] });
  readonly active = new Gauge({ name: 'volley_lb_active_connections', help: 'Client connections open now', labelNames: ['listener'], registers: [this.registry] });
}
