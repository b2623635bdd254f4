import { Module, type DynamicModule } from '@nestjs/common';
import { AdminAuthGuard } from './admin-auth.guard';
import { ADMIN_DEPS, type AdminDeps } from './admin-deps';
import { AdminController } from './admin.controller';
import { AdminService } from './admin.service';
import {
  AuditController,
  FederationsController,
  PoliciesController,
  PrivacyController,
} from './compliance.controller';
import { ComplianceService } from './compliance.service';
import { SecretRotationController } from './secret-rotation.controller';
import { SecretRotationService } from './secret-rotation.service';

@Module({})
export class AdminModule {
  static register(deps: AdminDeps): DynamicModule {
    return {
      module: AdminModule,
      controllers: [
        AdminController,
        FederationsController,
        PoliciesController,
        PrivacyController,
        AuditController,
        SecretRotationController,
      ],
      providers: [
        { provide: ADMIN_DEPS, useValue: deps },
        AdminService,
        ComplianceService,
        SecretRotationService,
        AdminAuthGuard,
      ],
      exports: [ADMIN_DEPS, AdminAuthGuard],
    };
  }
}
