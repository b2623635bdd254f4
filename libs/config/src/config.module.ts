import { Global, Module, type DynamicModule } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import type { BrokerConfig } from './config.schema';

export const BROKER_CONFIG = Symbol('BROKER_CONFIG');

/**
 * Holds the configuration validated before Nest starts (see `loadBrokerConfigOrExit`), so a bad
 * variable never gets as far as opening a database connection.
 */
@Global()
@Module({})
export class BrokerConfigModule {
  static forRoot(config: BrokerConfig): DynamicModule {
    return {
      module: BrokerConfigModule,
      // @nestjs/config carries the validated values for modules that prefer ConfigService; the
      // environment itself was validated once, before Nest started.
      imports: [
        ConfigModule.forRoot({ isGlobal: true, ignoreEnvFile: true, load: [() => ({ broker: config })] }),
      ],
      providers: [{ provide: BROKER_CONFIG, useValue: Object.freeze({ ...config }) }],
      exports: [BROKER_CONFIG],
    };
  }
}
