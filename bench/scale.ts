/**
 * npm run bench:scale — the Postgres backend (issue 14) beside the embedded one, measured side by side in one
 * run. The Postgres is PGlite (PostgreSQL compiled to WASM, one thread) served over the wire protocol: its
 * figures are a floor for a real server's, never a figure for one.
 *
 *   store round trip: one point query by a unique key (the kind every ingest step and request makes), as
 *     SQLite answers it, as the `pg` driver answers it asynchronously, and through clipdex's synchronous
 *     bridge (PgSyncConnection) — the price of keeping the repositories synchronous;
 *   copy: rows per second through `clipdex migrate`'s copier, SQLite → Postgres;
 *   vectors (scale-vectors.ts): hnswlib beside pgvector halfvec and vector — build, p50/p99, recall@10
 *     unfiltered and with 10% and 1% folder filters;
 *   workers (scale-workers.ts): photos/s through the shared queue with 1, 2 and 4 `clipdex worker` processes.
 *
 * BENCH_PARTS (default store,vectors,workers) picks parts. store: BENCH_ROWS (default 20000) rows in the table
 * queried, BENCH_QUERIES (default 3000) queries per path. vectors: BENCH_VECTORS (default 100000) × BENCH_DIM
 * (default 512), BENCH_VECTOR_QUERIES (default 200) per condition. workers: BENCH_PHOTOS (default 400),
 * BENCH_WORKERS (default 1,2,4). The workers part runs the built CLI (`npm run build` first).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase } from '../src/store/database.js';
import { copyLibrary } from '../src/store/library-copy.js';
import { openPostgresDatabase } from '../src/store/pg/pg-database.js';
import { startPgliteServer } from '../test/helpers/pglite-server.js';
import { benchVectors } from './scale-vectors.js';
import { benchWorkers } from './scale-workers.js';

const ROWS = Number(process.env.BENCH_ROWS ?? 20_000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 3000);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(ms: number[]): { p50: number; p99: number; mean: number } {
  const s = [...ms].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { p50: r(percentile(s, 50)), p99: r(percentile(s, 99)), mean: r(ms.reduce((a, b) => a + b, 0) / ms.length) };
}

async function benchStore(dir: string): Promise<unknown> {
  const server = await startPgliteServer();
  try {
    const sqlite = openDatabase(join(dir, 'library.db'));
    const root = sqlite.db.prepare<[string, number], { id: number }>('INSERT INTO roots (path, added_at) VALUES (?, ?) RETURNING id').get('/p', 1)!;
    const insert = sqlite.db.prepare('INSERT INTO images (root_id, path, size, mtime_ms, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
    sqlite.transaction(() => {
      for (let i = 0; i < ROWS; i++) insert.run(root.id, `/p/${i}.jpg`, i, i, 'indexed', 1, 1);
    });
    const store = openPostgresDatabase(server.url);
    const copyStart = performance.now();
    copyLibrary(sqlite, store);
    const copyMs = performance.now() - copyStart;

    const paths = Array.from({ length: QUERIES }, (_, i) => `/p/${(i * 7919) % ROWS}.jpg`);
    const SQL = 'SELECT id, size FROM images WHERE path = ?';
    const time = async (run: (path: string) => unknown | Promise<unknown>) => {
      for (const p of paths.slice(0, 200)) await run(p); // warm-up
      const ms: number[] = [];
      for (const p of paths) {
        const t = performance.now();
        await run(p);
        ms.push(performance.now() - t);
      }
      return summary(ms);
    };
    const liteStmt = sqlite.db.prepare(SQL);
    const bridgeStmt = store.db.prepare(SQL);
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    const asyncQuery = { name: 'bench_point', text: 'SELECT id, size FROM images WHERE path = $1' };
    // Interleaved rounds, so that the machine's load drifts over all three alike.
    const rounds: Record<string, { p50: number; p99: number; mean: number }[]> = { sqlite: [], pgAsync: [], pgBridge: [] };
    for (let round = 0; round < 3; round++) {
      rounds.sqlite!.push(await time((p) => liteStmt.get(p)));
      rounds.pgAsync!.push(await time((p) => client.query({ ...asyncQuery, values: [p] })));
      rounds.pgBridge!.push(await time((p) => bridgeStmt.get(p)));
    }
    await client.end();
    const best = (xs: { p50: number; p99: number; mean: number }[]) => xs.reduce((a, b) => (b.p50 < a.p50 ? b : a));
    const result = {
      rows: ROWS,
      queries: QUERIES,
      pointQueryMs: { sqlite: best(rounds.sqlite!), pgAsync: best(rounds.pgAsync!), pgBridge: best(rounds.pgBridge!) },
      bridgeOverAsync: Math.round((best(rounds.pgBridge!).p50 / best(rounds.pgAsync!).p50) * 100) / 100,
      copyRowsPerS: Math.round(ROWS / (copyMs / 1000)),
    };
    store.close();
    sqlite.close();
    return result;
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const parts = (process.env.BENCH_PARTS ?? 'store,vectors,workers').split(',');
  const dir = mkdtempSync(join(tmpdir(), 'clipdex-bench-scale-'));
  const log = (line: string) => console.error(`bench:scale: ${line}`);
  const result: Record<string, unknown> = {};
  try {
    if (parts.includes('store')) result.store = await benchStore(dir);
    if (parts.includes('vectors')) {
      result.vectors = await benchVectors({
        n: Number(process.env.BENCH_VECTORS ?? 100_000),
        dim: Number(process.env.BENCH_DIM ?? 512),
        queries: Number(process.env.BENCH_VECTOR_QUERIES ?? 200),
        dir: join(dir, 'vectors'),
        log,
      });
    }
    if (parts.includes('workers')) {
      result.workers = await benchWorkers({
        photos: Number(process.env.BENCH_PHOTOS ?? 400),
        workers: (process.env.BENCH_WORKERS ?? '1,2,4').split(',').map(Number),
        dir: join(dir, 'workers'),
        log,
      });
    }
    console.log(JSON.stringify(result, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
