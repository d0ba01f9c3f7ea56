/**
 * The progress `clipdex index` draws its bar from: the engine's progress events. Their total must be the
 * number of files the run processes, from the first event to the last, and done never above it.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { IngestProgress } from '../src/ingest/ingest-events.js';
import { IngestStore } from '../src/ingest/ingest-store.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';

let tmp: string;
let modelDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-progress-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 7 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** `files` photos spread over nested folders (folders are not files: they must not count). */
async function tree(name: string, files: number): Promise<string> {
  const root = join(tmp, name);
  for (let i = 0; i < files; i++) await writeJpeg(join(root, `album-${i % 7}`, `day-${i % 3}`, `p${i}.jpg`), 1000 + i, 32, 24);
  await mkdir(join(root, 'empty-folder'), { recursive: true });
  return root;
}

describe('index progress', () => {
  it('counts each file once: total is the file count throughout, done never above it', async () => {
    const files = 122;
    const root = await tree('engine', files);
    const lib = await openLibrary(join(tmp, 'data-engine'), modelDir);
    const seen: IngestProgress[] = [];
    // As `clipdex index` runs it: watching while it indexes, the library's own encoder, small batches of work.
    const engine = await IngestEngine.start(lib, {
      roots: [root],
      onlyGivenRoots: true,
      encoderThread: false,
      stopOnFailure: true,
      progressIntervalMs: 20,
      batchSize: 8,
      onEvent: (e) => {
        if (e.type === 'progress') seen.push(e.progress);
      },
    });
    try {
      await engine.idle();
    } finally {
      await engine.close();
      await lib.close();
    }
    const last = seen[seen.length - 1]!;
    expect(last).toMatchObject({ done: files, total: files, pending: 0, encoded: files });
    // Enough events to have watched the count move, not just the last one.
    expect(seen.filter((p) => p.done > 0 && p.done < files).length).toBeGreaterThan(2);
    const over = seen.filter((p) => p.total > files || p.done > p.total).map((p) => `${p.done}/${p.total}`);
    expect(over).toEqual([]);
  }, 120_000);

  it('leaves out what is queued for a root that is offline (this run cannot do it)', async () => {
    const files = 12;
    const root = await tree('beside-offline', files);
    const lib = await openLibrary(join(tmp, 'data-offline'), modelDir);
    // A NAS that went away with 5 files still queued from an earlier run.
    const away = join(tmp, 'nas');
    await mkdir(away);
    const store = new IngestStore(lib.store.db);
    const nas = store.addRoot(away);
    store.transaction(() => {
      for (let i = 0; i < 5; i++) store.enqueue(join(away, `n${i}.jpg`), nas.id, 1000, 1);
      store.markRootOffline(nas.id, 'unmounted');
    });
    const seen: IngestProgress[] = [];
    const engine = await IngestEngine.start(lib, {
      roots: [root],
      onlyGivenRoots: true,
      encoderThread: false,
      progressIntervalMs: 20,
      onEvent: (e) => {
        if (e.type === 'progress') seen.push(e.progress);
      },
    });
    try {
      await engine.idle();
    } finally {
      await engine.close();
      await lib.close();
    }
    // Still queued, and said so; but not in the total.
    expect(seen[seen.length - 1]).toMatchObject({ done: files, total: files, pending: 5 });
    expect(seen.filter((p) => p.total > files || p.done > p.total).map((p) => `${p.done}/${p.total}`)).toEqual([]);
  }, 120_000);

  it('`clipdex index` ends with its total at the file count', async () => {
    const files = 40;
    const root = await tree('cli', files);
    const env = { CLIPDEX_DATA_DIR: join(tmp, 'data-cli'), CLIPDEX_CACHE_DIR: join(tmp, 'cache-cli') };
    const r = await runCli(['--model', modelDir, 'index', root], env);
    expect(r.code, r.stderr).toBe(0);
    // On a pipe the bar is plain lines on stderr: "Indexing: done/total (pct) …".
    const lines = [...r.stderr.matchAll(/^Indexing: (\d+)\/(\d+)/gm)].map((m) => ({ done: Number(m[1]), total: Number(m[2]) }));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[lines.length - 1]).toEqual({ done: files, total: files });
    expect(lines.filter((l) => l.total > files || l.done > l.total)).toEqual([]);
    expect(r.stdout).toMatch(new RegExp(`${files} encoded`));
  }, 120_000);
});
