export * from './envelope';
export * from './signing-keys';
export * from './kek-rewrap';
export * from './pkcs11';
export * from './assertion';
