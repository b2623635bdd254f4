export * from './audit.service';
export * from './audit-verify';
