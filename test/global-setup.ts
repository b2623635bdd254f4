import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../libs/persistence/src/embedded-postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
  }
}

const PG_ADMIN_URL_ENV = 'MERIDIAN_TEST_PG_ADMIN_URL';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | void> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    publish(project, external);
    return;
  }

  // Under the repo, not /tmp: the initdb is kept between runs, so only the
  // first run on a machine pays for it.
  const dataDir = join(project.config.root, '.meridian', 'test-pg');
  const verbose = process.env.MERIDIAN_TEST_PG_LOG === '1';
  const pg = await startEmbeddedPostgres({
    dataDir,
    log: verbose ? (line) => process.stderr.write(`[test-pg] ${line.trimEnd()}\n`) : undefined,
  });
  publish(project, pg.adminUrl);
  return () => pg.stop();
}

function publish(project: TestProject, adminUrl: string): void {
  project.provide('pgAdminUrl', adminUrl);
  // Forked workers and the processes tests spawn inherit the environment.
  process.env[PG_ADMIN_URL_ENV] = adminUrl;
}
