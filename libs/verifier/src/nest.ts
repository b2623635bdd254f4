/**
 * `@meridian/verifier/nest` — the NestJS adapter of the verifier: module, guard, decorators.
 */
export { MeridianVerifierModule } from './verifier.module';
export { MeridianAuthGuard } from './verifier.guard';
export {
  MeridianToken,
  RequireActiveToken,
  RequireProcessingRegion,
  RequireScopes,
} from './verifier.decorators';
export {
  MERIDIAN_VERIFIER,
  MERIDIAN_VERIFIER_OPTIONS,
  type MeridianNestOptions,
  type MeridianRequest,
  type MeridianVerifierModuleOptions,
} from './verifier.providers';
