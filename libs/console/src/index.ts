export * from './roles';
export * from './console.module';
export * from './console.service';
export * from './console-oidc';
export * from './session';
export * from './forms';
export * from './html';
