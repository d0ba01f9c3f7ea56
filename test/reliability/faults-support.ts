/**
 * Shared plumbing of the fault tests (faults-*.test.ts): the real `clipdex serve` as a child process that can
 * be SIGKILLed at any moment (even before it listens), tmpfs mounts, read-only looks at the database while the
 * server is down, generated photo folders, and a library big enough to have an HNSW graph.
 *
 * STRESS=1 turns the short CI variants into the long ones (`npm run stress`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { Library } from '../../src/library/library.js';
import { CLI } from '../helpers/cli.js';
import { tinyJpeg } from '../helpers/ingest-library.js';
import { addSyntheticPhotos } from '../helpers/synthetic-photos.js';

export const STRESS = process.env.STRESS === '1';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---- the server as a child process ----

export interface Served {
  child: ChildProcess;
  /** Resolves with the URL once the server listens; rejects if it exits first. */
  ready: Promise<string>;
  url: string | null;
  /** Everything it wrote to stderr (its log). */
  log(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts `clipdex <global> --json serve --port 0 <serve>` without waiting for it: the caller may kill it
 * during its start (an index build happens before it listens).
 */
export function spawnServe(globalArgs: string[], serveArgs: string[] = [], env: Record<string, string> = {}): Served {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  const child = spawn(process.execPath, [CLI, ...globalArgs, '--json', 'serve', '--port', '0', ...serveArgs], {
    // Two threads for ORT: tests share a 2-core machine with other test files.
    env: { ...process.env, CLIPDEX_THREADS: '2', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const served: Served = {
    child,
    url: null,
    ready: new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', (line) => {
        try {
          served.url = (JSON.parse(line) as { url: string }).url;
          resolve(served.url);
        } catch {
          reject(new Error(`unexpected first line from clipdex serve: ${line}`));
        }
      });
      void exited.then(({ code, signal }) => reject(new Error(`clipdex serve exited (${code ?? signal}) before listening\n${stderr}`)));
    }),
    log: () => stderr,
    exited,
    alive: () => child.exitCode === null && child.signalCode === null,
    kill: async () => {
      if (served.alive()) child.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      if (served.alive()) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
  served.ready.catch(() => undefined);
  return served;
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
}

/** JSON in, JSON out; a body that is not JSON comes back as text. */
export async function api<T = any>(url: string, method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
  const res = await fetch(url + path, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: left as text
  }
  return { status: res.status, body: parsed as T };
}

/** Polls until `probe` returns something other than undefined/false. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---- the database, read while the server is down (or beside it: WAL readers never block the writer) ----

export function withDb<T>(dbPath: string, fn: (db: Database.Database) => T): T {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

export function integrityCheck(dbPath: string): string {
  return withDb(dbPath, (db) => (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; '));
}

/** Indexed paths, or an empty list while the database is not there or mid-migration. */
export function indexedPaths(dbPath: string, under?: string): string[] {
  try {
    return withDb(dbPath, (db) =>
      (
        db
          .prepare("SELECT path FROM images WHERE status = 'indexed' AND (? IS NULL OR path >= ? AND path < ?)")
          .all(under ?? null, under ? `${under}/` : null, under ? `${under}0` : null) as { path: string }[]
      ).map((r) => r.path),
    );
  } catch {
    return [];
  }
}

// ---- mounts ----

let mountAllowed: boolean | null = null;

/** True when this process may mount a tmpfs (root, not in a locked-down container). */
export function canMount(): boolean {
  if (mountAllowed !== null) return mountAllowed;
  const dir = mkdtempSync(join(tmpdir(), 'clipdex-mount-probe-'));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' }).status === 0;
  if (mounted) spawnSync('umount', [dir], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
  mountAllowed = mounted;
  return mounted;
}

export const NEEDS_MOUNT = '(skipped: mounting a tmpfs is not permitted here; run as root outside a locked-down container)';

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
}

export function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
}

export function remountTmpfs(dir: string, options: string): void {
  run('mount', ['-o', `remount,${options}`, dir]);
}

/** Unmounts, retrying while something still has a file open there; lazily as a last resort (cleanup). */
export async function unmount(dir: string, lazyFallback = true): Promise<void> {
  for (let i = 0; i < 20; i++) {
    if (spawnSync('umount', [dir], { stdio: 'ignore' }).status === 0) return;
    if (!isMountPoint(dir)) return;
    await sleep(100);
  }
  if (lazyFallback) spawnSync('umount', ['-l', dir], { stdio: 'ignore' });
  else throw new Error(`cannot unmount ${dir}`);
}

export function isMountPoint(dir: string): boolean {
  return spawnSync('mountpoint', ['-q', dir]).status === 0;
}

/** Free bytes on the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const out = spawnSync('df', ['-B1', '--output=avail', dir], { encoding: 'utf8' }).stdout.trim().split('\n');
  return Number(out[out.length - 1]);
}

// ---- photos ----

/** Writes `count` distinct small JPEGs (seeded noise: every seed its own hash and embedding); returns their paths. */
export async function writePhotos(dir: string, firstSeed: number, count: number, width = 48, height = 36, name = (seed: number) => `p${seed}.jpg`): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (let i = 0; i < count; i += 25) {
    const batch = Array.from({ length: Math.min(25, count - i) }, (_, k) => firstSeed + i + k);
    await Promise.all(
      batch.map(async (seed) => {
        const path = join(dir, name(seed));
        await writeFile(path, await tinyJpeg(seed, width, height));
        paths.push(path);
      }),
    );
  }
  return paths.sort();
}

// ---- a library with an HNSW graph ----

/** The server builds an HNSW graph from 20,000 vectors (IndexManager's default exactBelow); `clipdex serve` has no knob for it. */
export const HNSW_THRESHOLD = 20_000;

/** Adds `n` indexed photos with clustered embeddings under `archiveDir` (see synthetic-photos.ts), each file its own. */
export async function addArchive(dataDir: string, modelDir: string, archiveDir: string, n: number, seed = 7): Promise<void> {
  const library = await Library.open({ dataDir, model: modelDir, session: { providers: ['cpu'] } });
  try {
    await addSyntheticPhotos(library, {
      root: archiveDir,
      count: n,
      seed,
      path: (i) => join(archiveDir, `y${String(Math.floor(i / 1000)).padStart(3, '0')}`, `a${i}.jpg`),
      hash: (i) => (0xa0000000 + i).toString(16).padStart(64, '0'),
      files: 'distinct',
      width: 64,
      height: 48,
    });
  } finally {
    await library.close();
  }
}

/** A fresh temporary folder, removed by the returned function (after unmounting anything left inside). */
export function tempDir(prefix: string): { dir: string; cleanup: () => Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    cleanup: async () => {
      const mounts = spawnSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' }).stdout.split('\n').filter((m) => m.startsWith(`${dir}/`));
      for (const m of mounts.sort().reverse()) await unmount(m);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
