export * from './config.schema';
export * from './config.module';
export * from './console-roles';
export * from './security-config';
export * from './key-provider-config';
export * from './trusted-proxies';
