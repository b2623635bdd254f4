/**
 * `MeridianVerifierModule.forRoot(options)` — one verifier for the application, global, so
 * `@UseGuards(MeridianAuthGuard)` works in every module.
 */
import { Inject, Injectable, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { createVerifier, type Verifier } from './verifier';
import { MeridianAuthGuard } from './verifier.guard';
import {
  MERIDIAN_VERIFIER,
  MERIDIAN_VERIFIER_OPTIONS,
  type MeridianVerifierModuleOptions,
} from './verifier.providers';

/**
 * Registers the verifier (created from the options, validated at boot) and the guard.
 *
 * @example
 * ```ts
 * import { Module } from '@nestjs/common';
 * import { MeridianVerifierModule } from '@meridian/verifier/nest';
 *
 * @Module({
 *   imports: [
 *     MeridianVerifierModule.forRoot({
 *       trustBundleUrl: process.env.MERIDIAN_TRUST_BUNDLE_URL!,
 *       audience: 'https://orders.example.com',
 *       region: 'eu',
 *     }),
 *   ],
 *   controllers: [OrdersController],
 * })
 * export class AppModule {}
 * ```
 */
@Module({})
export class MeridianVerifierModule {
  static forRoot(options: MeridianVerifierModuleOptions): DynamicModule {
    // Created here, not lazily: invalid options stop the application at boot. Security reports
    // name the module's region unless the report option names one.
    const owned = !('verifier' in options);
    const verifier: Verifier =
      'verifier' in options
        ? options.verifier
        : createVerifier(
            options.report && options.report.region === undefined && options.region !== undefined
              ? { ...options, report: { ...options.report, region: options.region } }
              : options,
          );
    return {
      module: MeridianVerifierModule,
      global: true,
      providers: [
        { provide: MERIDIAN_VERIFIER_OPTIONS, useValue: options },
        { provide: MERIDIAN_VERIFIER, useValue: verifier },
        MeridianAuthGuard,
        // A verifier the module made is the module's to close (pending security reports sent).
        ...(owned ? [VerifierShutdown] : []),
      ],
      exports: [MERIDIAN_VERIFIER, MERIDIAN_VERIFIER_OPTIONS, MeridianAuthGuard],
    };
  }
}

/** Closes the module's own verifier when the application shuts down. */
@Injectable()
class VerifierShutdown implements OnApplicationShutdown {
  constructor(@Inject(MERIDIAN_VERIFIER) private readonly verifier: Verifier) {}

  async onApplicationShutdown(): Promise<void> {
    await this.verifier.close();
  }
}
