import { Controller, Get, Header, Inject, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import type { Response } from 'express';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';

@ApiExcludeController()
@Controller()
export class OpsController {
  constructor(
    @Inject(BROKER_RUNTIME) private readonly state: BrokerState,
    private readonly health: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
  ) {}

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

  /** Every region's issuer and public keys: services trust all regions from one URL. */
  @Get('.well-known/meridian/trust-bundle')
  @Header('Cache-Control', 'public, max-age=60')
  async trustBundle() {
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
    return {
      regions: rows.map((r) => ({
        region: r.id,
        issuer: r.issuer,
        jurisdiction: r.jurisdiction,
        jwks: { keys: r.keys ?? [] },
      })),
    };
  }
}
