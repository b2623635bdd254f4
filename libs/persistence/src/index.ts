export * from './data-sources';
export * from './embedded-postgres';
