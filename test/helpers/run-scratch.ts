/**
 * vitest's globalSetup (vitest.config.ts): one scratch folder for the whole run, named in
 * CLIPDEX_TEST_SCRATCH for the workers, removed when the run ends. The per-process templates
 * (labeled-library.ts, pglite-server.ts) live there: vitest stops its workers with a signal, so their own
 * `exit` handlers never run and a template kept in the system's tmp would outlive every run.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): (() => void) | undefined {
  // Each project of the config runs this; the first one makes the folder and removes it at the end.
  if (process.env.CLIPDEX_TEST_SCRATCH) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'clipdex-test-run-'));
  process.env.CLIPDEX_TEST_SCRATCH = dir;
  return () => {
    rmSync(dir, { recursive: true, force: true });
    delete process.env.CLIPDEX_TEST_SCRATCH;
  };
}

/**
 * Where a test process keeps what it makes once and reuses (`name` says what, the pid whose it is): the
 * run's scratch folder under vitest, removed with it; elsewhere (a bench script) the system's tmp,
 * removed when the process exits.
 */
export function processScratch(name: string): string {
  const run = process.env.CLIPDEX_TEST_SCRATCH;
  if (run) return join(run, `${name}-${process.pid}`);
  const path = join(tmpdir(), `clipdex-${name}-${process.pid}`);
  process.once('exit', () => rmSync(path, { recursive: true, force: true }));
  return path;
}
