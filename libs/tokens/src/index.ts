export * from './admin-audience';
export * from './claims';
export * from './client-secret';
export * from './oidc-adapter';
export * from './provider.factory';
export * from './resource-catalog';
export * from './access-token-status';
export * from './token-exchange';
