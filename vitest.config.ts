import { defineConfig } from 'vitest/config';

// Two projects: fast unit/integration tests in test/, and end-to-end suites in
// e2e/ that start real backends (longer timeouts, fewer in parallel on 2 cores).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          maxWorkers: 2,
        },
      },
    ],
  },
});
