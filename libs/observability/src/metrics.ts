import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface BrokerMetrics {
  registry: Registry;
  tokenRequests: Counter<'grant_type' | 'outcome'>;
  httpDuration: Histogram<'route' | 'status_class'>;
  keyRotations: Counter<'trigger'>;
}

export function createBrokerMetrics(region: string): BrokerMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ region });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    tokenRequests: new Counter({
      name: 'meridian_token_requests_total',
      help: 'Token endpoint requests by grant type and outcome (success or the OAuth error code)',
      labelNames: ['grant_type', 'outcome'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'meridian_http_request_duration_seconds',
      help: 'HTTP request latency by route group',
      labelNames: ['route', 'status_class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    keyRotations: new Counter({
      name: 'meridian_key_rotations_total',
      help: 'Signing key rotations by trigger (schedule or admin)',
      labelNames: ['trigger'],
      registers: [registry],
    }),
  };
}
