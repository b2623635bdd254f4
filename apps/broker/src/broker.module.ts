import { Module, type DynamicModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { BrokerConfigModule } from '@meridian/config';
import { AdminModule } from '@meridian/admin';
import { ConsoleModule } from '@meridian/console';
import { SecurityModule } from '@meridian/security';
import { consoleClientId } from '@meridian/tokens';
import { BROKER_RUNTIME, type BrokerState } from './broker-state';
import { InteractionController } from './interaction.controller';
import { OpsController } from './ops.controller';
import { PeerController } from './peer.controller';

/** Composition root: wires the runtime built in bootstrap into Nest's controllers. */
@Module({})
export class BrokerModule {
  static forRoot(state: BrokerState): DynamicModule {
    const { runtime } = state;
    return {
      module: BrokerModule,
      imports: [
        BrokerConfigModule.forRoot(runtime.config),
        TerminusModule.forRoot({ logger: false, errorLogStyle: 'json' }),
        AdminModule.register({
          region: runtime.config.region,
          adminClientId: runtime.config.adminClientId,
          controlDb: runtime.controlDb,
          audit: runtime.audit,
          tokenStatus: runtime.tokenStatus,
          clients: runtime.clients,
          resources: runtime.resources,
          validateClientMetadata: async (metadata) => {
            await (runtime.provider.Client as unknown as { validate(m: unknown): Promise<unknown> }).validate(
              metadata,
            );
          },
          rotateKeys: (actor) => runtime.rotateKeys(actor),
          keys: () => runtime.keys,
          issuer: runtime.config.issuer,
          regionDb: runtime.regionDb,
          federations: runtime.federations,
          checkIssuer: async (issuer, clientId) => {
            await runtime.upstream.checkIssuer(issuer, clientId);
          },
          policies: runtime.policies,
          subjects: runtime.subjects,
          locator: runtime.locator,
          notifyErasure: async (sub) => {
            await runtime.peerErasure.notify(sub);
          },
        }),
        ConsoleModule.register({
          region: runtime.config.region,
          issuer: runtime.config.issuer,
          clientId: consoleClientId(runtime.config.region),
          signingAlg: runtime.config.signingAlg,
          signingKey: () => runtime.keys.current,
          apiBase: () => runtime.config.consoleApiUrl ?? state.localUrl ?? runtime.config.issuer,
          kek: runtime.config.kek,
          regionDb: runtime.regionDb,
          sessionSeconds: runtime.config.consoleSessionSeconds,
          timeoutMs: runtime.config.upstreamTimeoutMs,
          logger: runtime.logger.child({ component: 'console' }),
        }),
        SecurityModule.register(() => runtime.security),
      ],
      controllers: [OpsController, InteractionController, PeerController],
      providers: [{ provide: BROKER_RUNTIME, useValue: state }],
    };
  }
}
