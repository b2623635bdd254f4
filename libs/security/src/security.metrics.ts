import { Counter, type Registry } from 'prom-client';

export interface SecurityMetrics {
  /** Every event the detectors see, by type (an auth failure, a reuse, a reported rejection…). */
  events: Counter<'type'>;
  /** Detections: a detector's threshold crossed (each also an audit entry and a webhook). */
  detections: Counter<'detector'>;
  /** Requests refused by a limit or a lockout, by route and why. */
  refusals: Counter<'route' | 'reason'>;
  /** Requests answered 503 at once because the process was saturated. */
  shed: Counter<'reason'>;
  /** The shared limit store failed or timed out (requests then fail closed). */
  storeErrors: Counter<string>;
  webhooks: Counter<'outcome'>;
}

export function createSecurityMetrics(registry: Registry): SecurityMetrics {
  const registers = [registry];
  return {
    events: new Counter({
      name: 'meridian_security_events_total',
      help: 'Security events seen by the detectors, by type',
      labelNames: ['type'],
      registers,
    }),
    detections: new Counter({
      name: 'meridian_security_detections_total',
      help: 'Anomalies detected (threshold crossed), by detector; each is audited and sent to the webhook',
      labelNames: ['detector'],
      registers,
    }),
    refusals: new Counter({
      name: 'meridian_rate_limited_requests_total',
      help: 'Requests refused by a rate limit or lockout, by route and reason (client, source, client_locked, source_locked, store_unavailable)',
      labelNames: ['route', 'reason'],
      registers,
    }),
    shed: new Counter({
      name: 'meridian_shed_requests_total',
      help: 'Requests answered 503 because the process was saturated, by reason (in_flight, event_loop_delay)',
      labelNames: ['reason'],
      registers,
    }),
    storeErrors: new Counter({
      name: 'meridian_rate_limit_store_errors_total',
      help: 'Calls to the shared limit store (the region database) that failed or timed out',
      registers,
    }),
    webhooks: new Counter({
      name: 'meridian_security_webhook_deliveries_total',
      help: 'Alert webhook deliveries by outcome (delivered, failed)',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
