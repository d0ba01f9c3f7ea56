/**
 * File names that are not UTF-8 (issue 11): Latin-1 names from old NAS shares and archives, real bytes on
 * this Linux file system (`caf\xe9.jpg`, one byte for é). Before the fix the scanner built their paths from
 * U+FFFD decodes, stat said ENOENT and reconcile dropped them as vanished: 15 files on disk, 1 indexed,
 * 0 failed. Real components throughout: the built CLI, the engine with its watcher, the HTTP server.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestEvent } from '../src/ingest/ingest-events.js';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { startServer } from '../src/server/server.js';
import { runCli } from './helpers/cli.js';
import { jpegBytes, waitFor } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';

let tmp: string;
let modelDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-latin1-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 5 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A name as Latin-1 bytes: each character U+0000–U+00FF is one byte (`é` → 0xE9), so not UTF-8. */
const latin1 = (name: string) => ({ bytes: Buffer.from(name, 'latin1'), display: name, raw: true });
const utf8 = (name: string) => ({ bytes: Buffer.from(name, 'utf8'), display: name, raw: false });
type Part = ReturnType<typeof latin1>;

interface TreeFile {
  /** The bytes the file system holds. */
  abs: Buffer;
  /** What clipdex shows: Latin-1 names decoded as Latin-1 (raw-path.ts). */
  display: string;
  /** True when some name in the path is not UTF-8 (path_bytes is stored). */
  raw: boolean;
}

const VACANCES = latin1('Vacances été 2003');
const MUSEE = latin1('Musée');
const ALBUMS = utf8('albums');

/** 12 paths with Latin-1 names (a nested Latin-1 folder among them) and 3 UTF-8 controls. */
const TREE: Part[][] = [
  [VACANCES, latin1('café.jpg')],
  // Lossy UTF-8 decoding would turn these two into the same `caf\uFFFD.jpg`.
  [VACANCES, latin1('cafè.jpg')],
  [VACANCES, latin1('plâge.jpg')],
  [VACANCES, latin1('château.jpg')],
  [VACANCES, MUSEE, utf8('tableau.jpg')],
  [VACANCES, MUSEE, latin1('scène.jpg')],
  [latin1('Noël.jpg')],
  [latin1('garçon.jpg')],
  [latin1('fête.jpg')],
  [ALBUMS, latin1('forêt.jpg')],
  [ALBUMS, latin1('à trier'), utf8('plage.jpg')],
  [ALBUMS, latin1('Ève.jpeg')],
  [utf8('plain.jpg')],
  [utf8('été.jpg')],
  [ALBUMS, utf8('ok.jpg')],
];

const SLASH = Buffer.from('/');

function joinBytes(root: string, parts: Part[]): TreeFile {
  const abs = Buffer.concat([Buffer.from(root), ...parts.flatMap((p) => [SLASH, p.bytes])]);
  return { abs, display: [root, ...parts.map((p) => p.display)].join('/'), raw: parts.some((p) => p.raw) };
}

async function writeTree(root: string, tree: Part[][], seed: number): Promise<TreeFile[]> {
  const files: TreeFile[] = [];
  for (const [i, parts] of tree.entries()) {
    const file = joinBytes(root, parts);
    await mkdir(joinBytes(root, parts.slice(0, -1)).abs, { recursive: true });
    await writeFile(file.abs, await jpegBytes(seed + i, 40, 30));
    files.push(file);
  }
  return files;
}

interface Row {
  id: number;
  path: string;
  pathBytes: Buffer | null;
  status: string;
}

const rowsOf = (lib: Library): Row[] =>
  lib.store.db.prepare('SELECT id, path, path_bytes AS pathBytes, status FROM images ORDER BY path').all() as Row[];

/** Every file has an indexed row under its display path, with the raw bytes stored exactly when needed. */
function expectAllIndexed(rows: Row[], files: TreeFile[]): void {
  expect(rows.map((r) => r.path).sort()).toEqual(files.map((f) => f.display).sort());
  for (const f of files) {
    const row = rows.find((r) => r.path === f.display)!;
    expect(row.status, f.display).toBe('indexed');
    if (f.raw) expect(Buffer.from(row.pathBytes!).equals(f.abs), f.display).toBe(true);
    else expect(row.pathBytes, f.display).toBeNull();
  }
}

describe('clipdex index over a tree of Latin-1 names', () => {
  let root: string;
  let files: TreeFile[];
  const env = () => ({ CLIPDEX_DATA_DIR: join(tmp, 'cli', 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cli', 'cache') });

  beforeAll(async () => {
    root = join(tmp, 'nas');
    files = await writeTree(root, TREE, 100);
  });

  it('indexes all 15 files, none failed, each under its Latin-1 display path', async () => {
    const run = await runCli(['--model', modelDir, '--json', 'index', root], env());
    expect(run.code, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as { indexed: number; failed: number; pending: number; run: { failed: number; vanished: number } };
    expect({ indexed: out.indexed, failed: out.failed, pending: out.pending }).toEqual({ indexed: 15, failed: 0, pending: 0 });
    expect(out.run).toMatchObject({ failed: 0, vanished: 0 });

    const lib = await openLibrary(env().CLIPDEX_DATA_DIR, modelDir);
    try {
      expectAllIndexed(rowsOf(lib), files);
    } finally {
      await lib.close();
    }
    // A second run finds every file where it left it: nothing is re-read, nothing removed.
    const again = await runCli(['--model', modelDir, '--json', 'index', root], env());
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ indexed: 15, run: { encoded: 0, reused: 0, removed: 0, failed: 0 } });
  });

  it('serves each original byte-exact from /api/images/:id/file, and shows the display path', async () => {
    const lib = await openLibrary(env().CLIPDEX_DATA_DIR, modelDir);
    const server = await startServer({ library: lib, port: 0 });
    try {
      const rows = rowsOf(lib);
      expect(rows).toHaveLength(15);
      for (const f of files) {
        const row = rows.find((r) => r.path === f.display)!;
        const res = await fetch(`${server.url}/api/images/${row.id}/file`);
        expect(res.status, f.display).toBe(200);
        const body = Buffer.from(await res.arrayBuffer());
        expect(body.equals(await readFile(f.abs)), f.display).toBe(true);
        const meta = (await (await fetch(`${server.url}/api/images/${row.id}`)).json()) as { path: string };
        expect(meta.path).toBe(f.display);
      }
    } finally {
      server.server.closeAllConnections();
      await new Promise((r) => server.server.close(r));
      await lib.close();
    }
  });
});

describe('the engine with Latin-1 names', () => {
  it('counts a listed file that is deleted before it is read (FILE_VANISHED), never dropping it silently', async () => {
    const root = join(tmp, 'vanish');
    const [kept, doomed] = await writeTree(root, [[latin1('gardé.jpg')], [latin1('disparué.jpg')]], 300);
    // A future mtime keeps the walk's find parked as "still being written" until it settles: the file can be
    // deleted after the walk listed it and before the pipeline reads it, however slow the machine.
    const future = new Date(Date.now() + 3_600_000);
    await utimes(doomed!.abs, future, future);
    const lib = await openLibrary(join(tmp, 'vanish-data'), modelDir);
    const events: IngestEvent[] = [];
    const engine = await IngestEngine.start(lib, { roots: [root], watch: false, stableMs: 2000, debounceMs: 50, onEvent: (e) => events.push(e) });
    try {
      await waitFor(() => events.some((e) => e.type === 'scan' && e.phase === 'finished'), 'the walk to finish');
      await unlink(doomed!.abs);
      await engine.idle();
      const notice = events.find((e) => e.type === 'notice' && e.code === 'FILE_VANISHED');
      expect(notice, JSON.stringify(events.filter((e) => e.type !== 'progress'))).toBeDefined();
      expect(notice).toMatchObject({ message: expect.stringContaining(doomed!.display) });
      expect(engine.status().progress.vanished).toBe(1);
      expect(rowsOf(lib).map((r) => r.path)).toEqual([kept!.display]);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('skips, and says so, a Latin-1 name that reads the same as the UTF-8 name beside it', async () => {
    const root = join(tmp, 'clash');
    // A half-converted archive: `caf\xe9.jpg` and `café.jpg` both read "café.jpg", one path for two files.
    const [twin, clash, other] = await writeTree(root, [[utf8('café.jpg')], [latin1('café.jpg')], [latin1('crème.jpg')]], 800);
    const lib = await openLibrary(join(tmp, 'clash-data'), modelDir);
    const events: IngestEvent[] = [];
    const engine = await IngestEngine.start(lib, { roots: [root], watch: false, stableMs: 400, debounceMs: 50, onEvent: (e) => events.push(e) });
    try {
      await engine.idle();
      const notices = events.filter((e) => e.type === 'notice' && e.code === 'ENAMECLASH');
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatchObject({ message: expect.stringContaining(clash!.display) });
      // The UTF-8 file keeps its row (no raw bytes: the name is exact); the other Latin-1 name is indexed.
      expectAllIndexed(rowsOf(lib), [twin!, other!]);
      const rows = rowsOf(lib);
      const res = lib.images.get(rows.find((r) => r.path === twin!.display)!.id)!;
      expect(res.contentHash).toBe(createHash('sha256').update(await readFile(twin!.abs)).digest('hex'));
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('follows a Latin-1 name renamed to its UTF-8 spelling (convmv): same photo id, its raw bytes dropped', async () => {
    const root = join(tmp, 'convmv');
    const [old] = await writeTree(root, [[latin1('soirée.jpg')]], 900);
    const lib = await openLibrary(join(tmp, 'convmv-data'), modelDir);
    let engine = await IngestEngine.start(lib, { roots: [root], watch: false, stableMs: 400, debounceMs: 50 });
    try {
      await engine.idle();
      const [before] = rowsOf(lib);
      expect(before?.pathBytes).not.toBeNull();
      const renamed = joinBytes(root, [utf8('soirée.jpg')]);
      await rename(old!.abs, renamed.abs);
      await engine.close();
      engine = await IngestEngine.start(lib, { roots: [root], watch: false, stableMs: 400, debounceMs: 50 });
      await engine.idle();
      expectAllIndexed(rowsOf(lib), [renamed]);
      expect(rowsOf(lib)[0]!.id).toBe(before!.id);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('indexes Latin-1 files added while watching: chokidar drops them, the walk it prompts finds them', async () => {
    const root = join(tmp, 'watched');
    const ETE = latin1('Été 1995');
    const before = await writeTree(root, [[utf8('déjà.jpg')], [ALBUMS, utf8('start.jpg')], [ETE, latin1('début.jpg')]], 400);
    const lib = await openLibrary(join(tmp, 'watched-data'), modelDir);
    const engine = await IngestEngine.start(lib, { roots: [root], watch: true, stableMs: 400, debounceMs: 50 });
    try {
      await engine.idle();
      expect(rowsOf(lib)).toHaveLength(3);
      // Files written in place (one in a UTF-8 folder), and folders moved in whole (as `mv` does): one with a
      // Latin-1 name, and one with a UTF-8 name holding a Latin-1 name (no raw event names that one).
      const added = await writeTree(root, [[latin1('ajouté.jpg')], [ALBUMS, latin1('reçu.jpg')]], 500);
      const staging = join(tmp, 'staging');
      const HIVER = latin1('Hiver à la montagne');
      const NOEL = utf8('Noël 1999');
      const moved = await writeTree(staging, [[HIVER, latin1('neigé.jpg')], [HIVER, utf8('ski.jpg')], [NOEL, latin1('crèche.jpg')]], 600);
      for (const dir of [HIVER, NOEL]) await rename(joinBytes(staging, [dir]).abs, joinBytes(root, [dir]).abs);
      const arrived = [
        ...added,
        ...moved.map((f) => ({ ...f, abs: Buffer.from(f.abs.toString('latin1').replace(staging, root), 'latin1'), display: f.display.replace(staging, root) })),
      ];
      const all = [...before, ...arrived];
      await waitFor(() => rowsOf(lib).filter((r) => r.status === 'indexed').length === all.length || undefined, 'the added files to be indexed', 30_000);
      expectAllIndexed(rowsOf(lib), all);

      // chokidar watches nothing inside a folder whose name is not UTF-8: files added later to one (there
      // since the start, or moved in while watching) are seen through the watch on its bytes.
      const later = [...(await writeTree(root, [[ETE, latin1('août.jpg')]], 700)), ...(await writeTree(root, [[HIVER, latin1('dégel.jpg')]], 701))];
      await waitFor(() => rowsOf(lib).filter((r) => r.status === 'indexed').length === all.length + 2 || undefined, 'files added inside Latin-1 folders', 30_000);
      expectAllIndexed(rowsOf(lib), [...all, ...later]);
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});
