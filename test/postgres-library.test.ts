/**
 * A library kept in Postgres (issue 14), through the CLI as a user runs it: `clipdex --db postgres://… index`
 * then `search`, `similar`, `list` — from the machine that indexed and from another one with an empty data
 * dir sharing the database. The Postgres is real (PGlite + pgvector over the wire protocol).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

let tmp: string;
let modelDir: string;
let server: PgliteServer;
const photos: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-pg-library-'));
  [server, modelDir] = await Promise.all([startPgliteServer(), buildTinyModel({ out: join(tmp, 'model'), seed: 5 }).then((m) => m.dir)]);
  for (const [i, name] of ['beach.jpg', 'trip/dog.jpg', 'trip/cat.jpg', 'home/sofa.jpg', 'home/garden.jpg'].entries()) {
    const path = join(tmp, 'Pictures', name);
    await writeJpeg(path, 30 + i);
    photos.push(path);
  }
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

interface Hit {
  id: number;
  path: string;
  score: number;
}

describe('a library in Postgres', () => {
  const machineA = () => ({ CLIPDEX_DATA_DIR: join(tmp, 'machine-a'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
  const machineB = () => ({ CLIPDEX_DATA_DIR: join(tmp, 'machine-b'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });

  it('indexes a folder with --db and keeps no SQLite file in the data dir', async () => {
    const r = await runCli(['--db', server.url, '--model', modelDir, 'index', join(tmp, 'Pictures')], machineA());
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(tmp, 'machine-a', 'library.db'))).toBe(false);
    // The vectors are searched inside Postgres (pgvector), so no graph files are kept per machine either.
    expect(existsSync(join(tmp, 'machine-a', 'index'))).toBe(false);
    const status = await runCli(['--db', server.url, '--model', modelDir, '--json', 'status'], machineA());
    expect(status.code, status.stderr).toBe(0);
    const json = JSON.parse(status.stdout) as { index: unknown; library: unknown };
    expect(json.index).toMatchObject({ engine: 'pgvector', location: 'postgres', count: photos.length, pending: 0 });
    expect(json.library).toMatchObject({ backend: 'postgres' });
    expect(JSON.stringify(json)).not.toContain('postgres:postgres@');
    const text = await runCli(['--db', server.url, '--model', modelDir, 'status'], machineA());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Database {2}postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres \(PostgreSQL\)/);
    expect(text.stdout).toMatch(/Files {5}5 indexed, 0 pending, 0 failed/);
    expect(text.stdout).toMatch(/Index\s+pgvector, 5 vectors, recall@10 1\.000 at ef \d+/);
    expect(text.stdout).not.toMatch(/hnswlib-node/);
  }, 120_000);

  it('searches, finds similar photos and lists them, from the machine that indexed and from another (CLIPDEX_DATABASE_URL)', async () => {
    const answers: Hit[][] = [];
    for (const env of [{ ...machineA() }, { ...machineB(), CLIPDEX_DATABASE_URL: server.url }]) {
      const args = env === undefined ? [] : 'CLIPDEX_DATABASE_URL' in env ? [] : ['--db', server.url];
      const search = await runCli([...args, '--model', modelDir, '--json', 'search', 'a dog in the garden', '--local', '--limit', '10'], env);
      expect(search.code, search.stderr).toBe(0);
      const hits = (JSON.parse(search.stdout) as { results: Hit[] }).results;
      expect(hits.map((h) => h.path).sort()).toEqual([...photos].sort());
      answers.push(hits);

      const similar = await runCli([...args, '--model', modelDir, '--json', 'similar', String(hits[0]!.id), '--local'], env);
      expect(similar.code, similar.stderr).toBe(0);
      const near = (JSON.parse(similar.stdout) as { results: Hit[] }).results;
      expect(near.length).toBeGreaterThan(0);
      expect(near.map((h) => h.id)).not.toContain(hits[0]!.id);

      const list = await runCli([...args, '--json', 'list', '--folder', join(tmp, 'Pictures', 'trip')], env);
      expect(list.code, list.stderr).toBe(0);
      expect((JSON.parse(list.stdout) as { images: { path: string }[] }).images.map((i) => i.path).sort()).toEqual(photos.filter((p) => p.includes('/trip/')).sort());
    }
    // The same vectors, the same ranking, whichever machine asks.
    expect(answers[1]!.map((h) => [h.id, h.score.toFixed(5)])).toEqual(answers[0]!.map((h) => [h.id, h.score.toFixed(5)]));
  }, 180_000);

  it('says clearly when the server cannot be reached, without printing the password', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const r = await runCli(['--db', `postgres://me:hunter2@127.0.0.1:${port}/photos`, '--model', modelDir, 'search', 'dog', '--local'], machineA());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`Postgres server at postgres://me:\\*\\*\\*@127\\.0\\.0\\.1:${port}/photos cannot be reached`));
    expect(r.stderr).not.toContain('hunter2');
  }, 60_000);

  it('refuses a --db that is not a postgres:// URL', async () => {
    const r = await runCli(['--db', 'mysql://x/y', '--model', modelDir, 'search', 'dog', '--local'], machineA());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/postgres:\/\//);
  }, 60_000);
});
