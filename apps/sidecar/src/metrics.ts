/**
 * Prometheus metrics of one sidecar. Label children are created once: the hot path only
 * increments and observes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERIFIER_ERROR_CODES, type Verifier } from '@meridian/verifier';

export type Mode = 'proxy' | 'ext_authz';
/** Verifier codes plus the sidecar's own refusal of an ambiguous path. */
export type DenyReason = (typeof VERIFIER_ERROR_CODES)[number] | 'ERR_REQUEST_PATH';

export interface SidecarMetrics {
  registry: Registry;
  allowed(mode: Mode): void;
  denied(mode: Mode, reason: DenyReason): void;
  /** Whole request, observed when the response is finished (or cut). */
  completed(mode: Mode, outcome: 'allowed' | 'denied', seconds: number): void;
  /** Time the request spent in the sidecar until it was forwarded (or answered). */
  decision(seconds: number): void;
  upstreamError(kind: 'connect' | 'timeout' | 'reset'): void;
}

const DENY_REASONS: readonly DenyReason[] = [...VERIFIER_ERROR_CODES, 'ERR_REQUEST_PATH'];
const MODES: readonly Mode[] = ['proxy', 'ext_authz'];

export function createSidecarMetrics(verifier: Verifier): SidecarMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'meridian_sidecar_requests_total',
    help: 'Requests checked, by outcome (allowed|denied), reason (the verifier error code; "none" when allowed) and mode (proxy|ext_authz)',
    labelNames: ['outcome', 'reason', 'mode'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'meridian_sidecar_request_duration_seconds',
    help: 'Whole request latency through the sidecar (upstream included when proxied), by outcome and mode',
    labelNames: ['outcome', 'mode'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  const decision = new Histogram({
    name: 'meridian_sidecar_decision_duration_seconds',
    help: 'Latency the sidecar adds before forwarding: reading credentials, verifying, building headers',
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    registers: [registry],
  });
  const upstreamErrors = new Counter({
    name: 'meridian_sidecar_upstream_errors_total',
    help: 'Proxied requests the upstream did not answer, by kind (connect: 502, timeout: 504, reset: cut mid-response)',
    labelNames: ['kind'],
    registers: [registry],
  });
  new Gauge({
    name: 'meridian_sidecar_trust_bundle_loaded',
    help: '1 once a trust bundle is in use (readyz), 0 before',
    registers: [registry],
    collect() {
      this.set(verifier.bundleStatus().loaded ? 1 : 0);
    },
  });
  new Gauge({
    name: 'meridian_sidecar_trust_bundle_age_seconds',
    help: 'Age of the trust bundle in use (-1 when none was ever loaded)',
    registers: [registry],
    collect() {
      const { loadedAt } = verifier.bundleStatus();
      this.set(loadedAt === undefined ? -1 : (Date.now() - loadedAt) / 1000);
    },
  });

  const allowedCounters = new Map(MODES.map((m) => [m, requests.labels('allowed', 'none', m)]));
  const allowedDurations = new Map(MODES.map((m) => [m, duration.labels('allowed', m)]));
  const deniedDurations = new Map(MODES.map((m) => [m, duration.labels('denied', m)]));
  const deniedCounters = new Map<string, Counter.Internal>();
  for (const m of MODES) {
    for (const r of DENY_REASONS) deniedCounters.set(`${m} ${r}`, requests.labels('denied', r, m));
  }
  // Every series exists from the start (at 0), so rates and alerts need no "absent" special case.
  for (const c of [...allowedCounters.values(), ...deniedCounters.values()]) c.inc(0);
  for (const kind of ['connect', 'timeout', 'reset']) upstreamErrors.labels(kind).inc(0);

  return {
    registry,
    allowed(mode) {
      allowedCounters.get(mode)!.inc();
    },
    denied(mode, reason) {
      deniedCounters.get(`${mode} ${reason}`)!.inc();
    },
    completed(mode, outcome, seconds) {
      (outcome === 'allowed' ? allowedDurations : deniedDurations).get(mode)!.observe(seconds);
    },
    decision(seconds) {
      decision.observe(seconds);
    },
    upstreamError(kind) {
      upstreamErrors.labels(kind).inc();
    },
  };
}
