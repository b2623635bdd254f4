export * from './data-sources';
export * from './embedded-postgres';
export * from './availability';
