import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Vite 8 resolves tsconfig `paths` (@meridian/*) itself; no plugin needed.
  resolve: { tsconfigPaths: true },
  test: {
    // Nest, TypeORM and pg keep process-wide state; separate processes keep
    // test files from seeing each other's.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.spec.ts', 'libs/**/*.spec.ts', 'apps/**/*.spec.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
