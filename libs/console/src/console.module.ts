import { Module, type DynamicModule } from '@nestjs/common';
import { AdminPages } from './admin.pages';
import { CompliancePages } from './compliance.pages';
import { ConsoleController } from './console.controller';
import { CONSOLE_DEPS, ConsoleService, type ConsoleDeps } from './console.service';

/** The console at `<issuer>/console`: pages over the broker's own admin and compliance API. */
@Module({})
export class ConsoleModule {
  static register(deps: ConsoleDeps): DynamicModule {
    return {
      module: ConsoleModule,
      controllers: [ConsoleController],
      providers: [
        { provide: CONSOLE_DEPS, useValue: deps },
        { provide: ConsoleService, useFactory: () => new ConsoleService(deps) },
        {
          provide: AdminPages,
          useFactory: (c: ConsoleService) => new AdminPages(c),
          inject: [ConsoleService],
        },
        {
          provide: CompliancePages,
          useFactory: (c: ConsoleService) => new CompliancePages(c),
          inject: [ConsoleService],
        },
      ],
    };
  }
}
