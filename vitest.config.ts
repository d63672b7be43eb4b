import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('.', import.meta.url));

// Tests import workspace packages from source: `@fieldhub/<name>` -> packages/<name>/src/index.ts and
// `@fieldhub/<name>/<sub>` -> packages/<name>/src/<sub>/index.ts. Child-process tests use the built dist.
const sourceAlias = {
  find: /^@fieldhub\/([a-z0-9-]+)(\/[a-z0-9-]+)?$/,
  replacement: `${root}packages/$1/src$2/index.ts`,
};

// The firmware-bridge gateway is a workspace outside packages/.
const bridgeAlias = {
  find: /^@fieldhub\/firmware-bridge(\/[a-z0-9-]+)?$/,
  replacement: `${root}firmware-bridge/gateway/src$1/index.ts`,
};

export default defineConfig({
  resolve: { alias: [bridgeAlias, sourceAlias] },
  test: {
    // One test file per core, not vitest's default of one per core less: on CI's 2 cores that default is a single
    // worker, and the integration suites spend most of their time waiting on sockets, child processes and timers
    // (one worker kept the machine about 30% busy). Unit and integration run in the same group, so they share it.
    maxWorkers: availableParallelism(),
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: [
            'packages/*/src/**/*.test.ts',
            'firmware-bridge/gateway/src/**/*.test.ts',
            'scripts/**/*.test.{ts,mjs}',
          ],
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: [
            'packages/*/test/**/*.test.ts',
            'firmware-bridge/gateway/test/**/*.test.ts',
            'test/*/src/**/*.test.ts',
          ],
          exclude: ['**/port-443/**', '**/node_modules/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        // The official Azure SDKs dial 443 for REST: these suites bind it (CI runs as root) and run one file at a
        // time (scripts/run-tests.mjs passes --no-file-parallelism). globalSetup makes a test CA and exports
        // NODE_EXTRA_CA_CERTS before the test workers start, so the SDKs trust the hub as they would in the field.
        extends: true,
        test: {
          name: 'interop-443',
          include: ['test/*/src/port-443/**/*.test.ts'],
          globalSetup: ['test/interop/src/port-443/global-setup.ts'],
          // One file at a time even when a command line forgets --no-file-parallelism: they all bind 443.
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
