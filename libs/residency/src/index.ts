export * from './claims';
export * from './engine';
export * from './errors';
export * from './jurisdiction';
export * from './policy';
