import { defineConfig } from 'vitest/config';

// Benchmarks that need the test fixtures (real brokers, upstream IdPs, PostgreSQL): run with
// `npm run bench:login`; never part of `npm test`.
export default defineConfig({
  resolve: { tsconfigPaths: true },
  test: {
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    include: ['bench/**/*.bench.spec.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
  },
});
