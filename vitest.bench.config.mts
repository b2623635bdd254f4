import { defineConfig } from 'vitest/config';

// Benchmarks that need the test fixtures (real brokers, upstream IdPs, PostgreSQL). Never part of
// `npm test`. bench/login.bench.spec.ts is driven by the suite (`npm run bench -- login`, see
// bench/README.md), which passes its plan in BENCH_LOGIN_PLAN; bench/verifier.bench.spec.ts also
// runs on its own (libs/verifier/README.md).
export default defineConfig({
  resolve: { tsconfigPaths: true },
  test: {
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    include: ['bench/**/*.bench.spec.ts'],
    testTimeout: 4 * 3600_000,
    hookTimeout: 300_000,
  },
});
