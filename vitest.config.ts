import { configDefaults, defineConfig } from 'vitest/config';

/**
 * `npm test` runs every project below with one `vitest run`, one group after another (sequence.groupOrder).
 *
 * Why groups: on a 2-core machine a heavy file (thousands of files ingested, SIGKILL loops, a load driver, a
 * browser) beside another heavy file starves both, and tests that pass alone time out (ingest-engine's
 * "copying 2,000 files at once" beside reliability/load; a web-ui test under load). So the fast bulk runs
 * two files at a time first, then each heavy group runs one file at a time with the machine to itself.
 *
 * A heavy file belongs in exactly one list below; everything else under test/ is `unit`.
 * `npx vitest run test/x.test.ts` still runs just that file, in whichever project holds it.
 */

/** Ingest and index suites that fill both cores for a minute or more, or time file-system events. */
const HEAVY_INGEST = [
  'test/ingest-engine.test.ts',
  'test/ingest-crash.test.ts',
  'test/ingest-watcher.test.ts',
  'test/index-crash.test.ts',
  'test/index-recall.test.ts',
  // Their assertions wait on watcher events: a neighbour that fills both cores delays those past their bounds.
  'test/labels-survive.test.ts',
  'test/ingest-failed-files.test.ts',
  'test/ingest-library-folders.test.ts',
  'test/ingest-latin1-names.test.ts',
  // Five clipdex processes (two servers, three workers) on one Postgres.
  'test/postgres-workers.test.ts',
];
/** Real browsers (Chromium via playwright-core) against a running server. */
const BROWSER = ['test/e2e/**/*.test.ts', 'test/reliability/hostile-ui.test.ts'];
/** Load, fault-injection and hostile-input suites: servers killed, disks filled, many clients at once. */
const RELIABILITY = ['test/reliability/**/*.test.ts'];
/** Run on their own (vitest.install.config.ts): they pack and install the package. */
const NOT_HERE = ['test/install/**'];

export default defineConfig({
  test: {
    // OCR is on by default, and every engine a test starts would load PP-OCRv4 and read each photo beside
    // CLIP: the ingest, fault and load suites measure CLIP ingest and would get slower and less steady. Child
    // processes (`clipdex serve`, `index`) inherit it. The OCR suites turn it on explicitly (`ocr: true`, or
    // CLIPDEX_OCR: 'on' in a child's env); test/ocr-setting.test.ts clears it to see the default.
    env: { CLIPDEX_OCR: 'off' },
    // A scratch folder for the run, removed at its end: the per-worker templates of test/helpers live there.
    globalSetup: ['test/helpers/run-scratch.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, ...HEAVY_INGEST, ...BROWSER, ...RELIABILITY, ...NOT_HERE],
          // Encoders and sharp use both cores on their own; two files at a time keep the machine responsive.
          maxWorkers: 2,
          // Each worker imports the product's modules once, not once per file (~80 files). Measured under load:
          // vitest's summed import time was 106 s for 70 of these files isolated, 66 s for all 79 shared. No file
          // here leaves module state for the next (env stubs are undone in the file that made them).
          isolate: false,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'heavy-ingest',
          include: HEAVY_INGEST,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'reliability',
          include: RELIABILITY,
          exclude: [...configDefaults.exclude, ...BROWSER, ...NOT_HERE],
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
      {
        extends: true,
        test: {
          name: 'browser',
          include: BROWSER,
          maxWorkers: 1,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
