import { createHash } from 'node:crypto';
import { Controller, Get, Inject, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { Request, Response } from 'express';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';

@ApiExcludeController()
@Controller()
export class OpsController {
  constructor(
    @Inject(BROKER_RUNTIME) private readonly state: BrokerState,
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
  ) {
    this.bundles = new TrustBundleCache(state);
  }

  private readonly bundles: TrustBundleCache;

  /** Alive: the process answers. Never touches a dependency. */
  @Get('healthz')
  healthz() {
    return { status: 'ok' };
  }

  /** Ready: both databases answer and the broker is not shutting down. */
  @Get('readyz')
  @HealthCheck()
  readyz() {
    return this.health.check([
      async () => {
        const indicator = this.indicators.check('shutdown');
        return this.state.shuttingDown ? indicator.down({ reason: 'shutting down' }) : indicator.up();
      },
      async () => {
        const { control } = await this.state.runtime.ping();
        const indicator = this.indicators.check('control_database');
        return control ? indicator.up() : indicator.down({ reason: 'no answer' });
      },
      async () => {
        const { region } = await this.state.runtime.ping();
        const indicator = this.indicators.check('region_database');
        return region ? indicator.up() : indicator.down({ reason: 'no answer' });
      },
    ]);
  }

  @Get('metrics')
  async metrics(@Res() res: Response) {
    const registry = this.state.runtime.metrics.registry;
    res.setHeader('Content-Type', registry.contentType);
    res.send(await registry.metrics());
  }

  /**
   * Every region's issuer and public keys: services trust all regions from one URL. Built from
   * the control plane at most once a second (services and sidecars fetch it all the time; a key
   * published by another region or replica shows within a second, long before it signs anything;
   * a rotation in this process at once), with an
   * ETag so a verifier that already has it gets a 304.
   */
  @Get('.well-known/meridian/trust-bundle')
  async trustBundle(@Req() req: Request, @Res() res: Response) {
    const bundle = await this.bundles.get();
    res.setHeader('Cache-Control', 'public, max-age=60');
    res.setHeader('ETag', bundle.etag);
    if (req.headers['if-none-match'] === bundle.etag) {
      res.status(304).end();
      return;
    }
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.send(bundle.body);
  }
}

/** The trust bundle as served: the JSON text, and its ETag. */
class TrustBundleCache {
  private cached?: { at: number; keys: string; body: string; etag: string };
  private building?: { keys: string; done: Promise<{ body: string; etag: string }> };

  constructor(
    private readonly state: BrokerState,
    private readonly maxAgeMs = 1_000,
  ) {}

  async get(): Promise<{ body: string; etag: string }> {
    const c = this.cached;
    // This process's own key change (a rotation here) shows at once, not a second later.
    if (c && Date.now() - c.at < this.maxAgeMs && c.keys === this.state.runtime.keys.fingerprint) return c;
    // One query however many requests arrive while it runs.
    const keys = this.state.runtime.keys.fingerprint;
    if (this.building?.keys !== keys) {
      const building = {
        keys,
        done: this.build(keys).finally(() => {
          if (this.building === building) this.building = undefined;
        }),
      };
      this.building = building;
    }
    return this.building.done;
  }

  private async build(keys: string): Promise<{ body: string; etag: string }> {
    const at = Date.now();
    const rows = await this.state.runtime.controlDb.query<{
      id: string;
      issuer: string;
      jurisdiction: string | null;
      keys: unknown[] | null;
    }>(
      `select r.id, r.issuer, r.jurisdiction,
              coalesce(json_agg(k.public_jwk order by k.state, k.created_at) filter (where k.kid is not null), '[]') as keys
         from region r left join region_key k on k.region = r.id and (k.publish_until is null or k.publish_until > now())
        group by r.id order by r.id`,
    );
    const body = JSON.stringify({
      regions: rows.map((r) => ({
        region: r.id,
        issuer: r.issuer,
        jurisdiction: r.jurisdiction,
        jwks: { keys: r.keys ?? [] },
      })),
    });
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    this.cached = { at, keys, body, etag };
    return this.cached;
  }
}
