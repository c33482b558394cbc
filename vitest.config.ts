import { defineConfig } from 'vitest/config';

// Two projects: fast unit/integration tests in test/, and end-to-end suites in
// e2e/ that start real backends (longer timeouts, fewer in parallel on 2 cores).
// expect.poll waits up to 10 s, not vitest's 1 s: what a test polls for happens in milliseconds
// on a quiet machine, and later on CI's 2 cores shared with the e2e backends.
const POLL = { poll: { timeout: 10_000, interval: 20 } };

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          testTimeout: 20_000,
          expect: POLL,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          testTimeout: 60_000,
          expect: POLL,
          hookTimeout: 120_000,
          maxWorkers: 2,
        },
      },
    ],
  },
});
