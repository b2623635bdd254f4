export * from './admin-deps';
export * from './admin-error';
export * from './admin-auth.guard';
export * from './admin.service';
export * from './admin.controller';
export * from './admin.module';
export * from './dto/admin.dto';
