/**
 * `MeridianVerifierModule.forRoot(options)` — one verifier for the application, global, so
 * `@UseGuards(MeridianAuthGuard)` works in every module.
 */
import { Module, type DynamicModule } from '@nestjs/common';
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
    // Created here, not lazily: invalid options stop the application at boot.
    const verifier: Verifier = 'verifier' in options ? options.verifier : createVerifier(options);
    return {
      module: MeridianVerifierModule,
      global: true,
      providers: [
        { provide: MERIDIAN_VERIFIER_OPTIONS, useValue: options },
        { provide: MERIDIAN_VERIFIER, useValue: verifier },
        MeridianAuthGuard,
      ],
      exports: [MERIDIAN_VERIFIER, MERIDIAN_VERIFIER_OPTIONS, MeridianAuthGuard],
    };
  }
}
