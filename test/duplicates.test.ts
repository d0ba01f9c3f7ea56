/**
 * Duplicates review on real parts: photos copied from ../shared/photos into a temp root with transformed
 * copies made here (an exact copy, a resize, a JPEG re-save, a 90° turn), indexed by the self-built model
 * into a real SQLite library and vector index; the groups checked against a brute-force oracle over the
 * stored embeddings; hiding checked through every way a photo can be found; trash and undo checked on the
 * file system (byte-identical return, nothing overwritten, a failed move changing nothing) and on labels;
 * the REST API over a real HTTP server and the built CLI.
 */
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isClipdexError } from '../src/errors.js';
import { createFileRules, TRASH_DIR_NAME } from '../src/ingest/file-rules.js';
import { PhotoTrash } from '../src/ingest/photo-trash.js';
import { Library } from '../src/library/library.js';
import { chooseKeeper, findDuplicates, type DuplicatesReport } from '../src/search/duplicate-groups.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { createApp } from '../src/server/app.js';
import { DuplicatesRepo } from '../src/store/duplicates-repo.js';
import { OrphansRepo } from '../src/store/orphans-repo.js';
import { duplicateThresholdParam } from '../src/validation/duplicates-params.js';
import { parseParam } from '../src/validation/param-rules.js';
import { IndexManager } from '../src/index/index-manager.js';
import { runCli } from './helpers/cli.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';
import { addIndexedImages, clusteredVectors, openTestLibrary, tempLibraryDir } from './helpers/store-fixtures.js';

const labeled = sharedPath('photos', 'labeled');

/** Connected components of the pairs closer than `threshold`, from every pair of stored vectors. */
function oracleGroups(library: Library, ids: number[], threshold: number): number[][] {
  const { index } = library.requireModel();
  index.sync();
  const parent = new Map(ids.map((id) => [id, id]));
  const find = (x: number): number => (parent.get(x) === x ? x : find(parent.get(x)!));
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) {
      const a = index.vectorOf(ids[i]!)!;
      const b = index.vectorOf(ids[j]!)!;
      let dot = 0;
      for (let d = 0; d < a.length; d++) dot += a[d]! * b[d]!;
      if (1 - dot < threshold) parent.set(find(ids[j]!), find(ids[i]!));
    }
  }
  const groups = new Map<number, number[]>();
  for (const id of ids) groups.set(find(id), [...(groups.get(find(id)) ?? []), id]);
  return [...groups.values()].filter((g) => g.length > 1).map((g) => g.sort((x, y) => x - y)).sort((x, y) => x[0]! - y[0]!);
}

const groupsOf = (r: DuplicatesReport) => r.groups.map((g) => g.photos.map((p) => p.id).sort((x, y) => x - y)).sort((x, y) => x[0]! - y[0]!);

describe.skipIf(!labeled)(`duplicate groups, hiding and the trash ${labeled ? '' : NEEDS_SHARED}`, () => {
  let tmp: string;
  let root: string;
  let modelDir: string;
  let library: Library;
  let ids: number[];
  /** name (without folder) → photo id */
  const idOf = new Map<string, number>();

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-dups-'));
    root = join(tmp, 'photos');
    await mkdir(join(root, 'sub'), { recursive: true });
    const files: string[] = [];
    // Unrelated photos from the four folders, and transformed copies of two of them.
    for (const folder of ['fishes', 'tools', 'renewable', 'others']) {
      const names = (await readdir(join(labeled!, folder))).filter((n) => n.endsWith('.webp')).sort().slice(0, 2);
      for (const name of names) {
        const dst = join(root, `${folder}-${name}`);
        await copyFile(join(labeled!, folder, name), dst);
        files.push(dst);
      }
    }
    const original = files[0]!;
    const second = files[2]!;
    const copies: [string, (to: string) => Promise<unknown>][] = [
      ['sub/exact-copy.webp', (to) => copyFile(original, to)],
      ['resized.webp', (to) => sharp(original).resize({ width: 200 }).webp({ quality: 90 }).toFile(to)],
      ['resaved.jpg', (to) => sharp(original).flatten({ background: '#ffffff' }).jpeg({ quality: 92 }).toFile(to)],
      ['second-resized.png', (to) => sharp(second).resize({ width: 240 }).png().toFile(to)],
      ['turned.webp', (to) => sharp(second).rotate(90).webp({ quality: 95 }).toFile(to)],
    ];
    for (const [name, make] of copies) {
      await make(join(root, name));
      files.push(join(root, name));
    }
    modelDir = await tinyModel(tmp);
    library = await Library.open({ dataDir: join(tmp, 'data'), model: modelDir });
    ids = await indexFiles(library, root, files, (_f, i) => (i === 0 ? Date.UTC(2020, 0, 1) : null));
    files.forEach((f, i) => idOf.set(f.slice(root.length + 1), ids[i]!));
  }, 180_000);

  afterAll(async () => {
    await library?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('finds exactly the groups of pairs under the threshold (a brute-force oracle), at several thresholds', async () => {
    for (const threshold of [0.001, 0.01, 0.03]) {
      const report = await findDuplicates(library, { threshold });
      expect(report.photosChecked).toBe(ids.length);
      expect(groupsOf(report), `threshold ${threshold}`).toEqual(oracleGroups(library, ids, threshold));
      for (const g of report.groups) for (const p of g.photos) if (!p.keeper) expect(p.distance).toBeLessThan(threshold);
    }
  });

  it('puts an exact copy, a resize and a JPEG re-save of one photo in one group at the default threshold, and leaves unrelated photos out', async () => {
    const report = await findDuplicates(library);
    expect(report.threshold).toBe(0.01);
    const first = ids[0]!;
    const group = report.groups.find((g) => g.photos.some((p) => p.id === first))!;
    expect(group).toBeDefined();
    const names = group.photos.map((p) => p.path.slice(root.length + 1)).sort();
    expect(names).toEqual(expect.arrayContaining(['sub/exact-copy.webp', 'resized.webp', 'resaved.jpg']));
    const copy = group.photos.find((p) => p.path.endsWith('exact-copy.webp'))!;
    // The keeper is the original (same pixels as its exact copy, but dated): the copy has its very bytes.
    expect(group.keeperId).toBe(first);
    expect(group.reason).toMatch(/taken first: 2020-01-01/);
    expect(copy.exactCopy).toBe(true);
    expect(copy.distance).toBe(0);
    expect(group.kind).toBe('mixed');
    // The other fish photo, and the photos of the other folders, are no duplicates of it.
    for (const other of [...idOf.entries()].filter(([n]) => /^(tools|renewable|others)-/.test(n))) {
      expect(group.photos.map((p) => p.id)).not.toContain(other[1]);
    }
  });

  it('with rotations, joins a 90° turned copy it would not join otherwise, and says at which angle', async () => {
    const turned = idOf.get('turned.webp')!;
    // The photo the turned copy was made from (the first of tools/).
    const second = ids[2]!;
    const plain = await findDuplicates(library, { threshold: 0.005 });
    const together = (r: DuplicatesReport) => r.groups.some((g) => g.photos.some((p) => p.id === turned) && g.photos.some((p) => p.id === second));
    expect(together(plain)).toBe(false);
    const rotated = await findDuplicates(library, { threshold: 0.005, rotations: true });
    expect(rotated.rotationStats!.encodedPhotos).toBeGreaterThan(0);
    expect(together(rotated)).toBe(true);
    const photo = rotated.groups.flatMap((g) => g.photos).find((p) => p.id === turned || p.id === second)!;
    const group = rotated.groups.find((g) => g.photos.includes(photo))!;
    expect(group.photos.some((p) => p.rotated !== undefined && [90, 180, 270].includes(p.rotated))).toBe(true);
  });

  it('refuses a threshold outside 0.001–0.1 with the range in the message, and reads decimal text', async () => {
    for (const bad of [0.5, 0.0005, -1, Number.NaN]) {
      await expect(findDuplicates(library, { threshold: bad })).rejects.toThrow(/threshold must be a cosine distance from 0.001 to 0.1/);
    }
    expect(parseParam(duplicateThresholdParam, '0.02', '--threshold')).toBe(0.02);
    expect(() => parseParam(duplicateThresholdParam, 'abc', '--threshold')).toThrow(/--threshold must be a cosine distance/);
  });

  it('suggests the keeper by pixels, then date, then format, then file size, and says which rule decided', () => {
    const base = { width: 1000, height: 800, takenAt: null, format: 'jpeg', size: 100_000 };
    expect(chooseKeeper([{ id: 1, ...base }, { id: 2, ...base, width: 2000, height: 1600 }])).toEqual({ id: 2, reason: 'largest: 2000×1600 against 1000×800' });
    expect(chooseKeeper([{ id: 1, ...base, takenAt: Date.UTC(2021, 5, 1) }, { id: 2, ...base, takenAt: Date.UTC(2019, 0, 2) }])).toEqual({
      id: 2,
      reason: 'same dimensions; taken first: 2019-01-02 against 2021-06-01',
    });
    const byFormat = chooseKeeper([{ id: 1, ...base, format: 'webp' }, { id: 2, ...base, format: 'png' }, { id: 3, ...base }]);
    expect(byFormat.id).toBe(2);
    expect(byFormat.reason).toBe('same dimensions and date; best format: PNG (lossless) against JPEG');
    expect(chooseKeeper([{ id: 1, ...base }, { id: 2, ...base, size: 300_000 }]).reason).toMatch(/largest file: 293 KB against 98 KB/);
    expect(chooseKeeper([{ id: 5, ...base }, { id: 3, ...base }])).toEqual({ id: 3, reason: 'alike on every count; the first one added' });
  });

  it('a hidden photo leaves every search, find-similar, filtered search, page of the library and duplicate group, and comes back when unhidden', async () => {
    const engine = new QueryEngine(library);
    const repo = new DuplicatesRepo(library.store.db);
    const target = idOf.get('resized.webp')!;
    const original = ids[0]!;
    const seen = async () => {
      const similar = await engine.search({ terms: [{ imageId: original }], limit: 100 });
      const text = await engine.search({ terms: [{ text: 'a fish' }], limit: 100 });
      const filtered = await engine.search({ terms: [{ text: 'a fish' }], limit: 100, filter: { folder: root, formats: ['webp'] } });
      const page = engine.browse({ limit: 100 });
      const dups = await findDuplicates(library);
      return {
        similar: similar.results.some((r) => r.id === target),
        text: text.results.some((r) => r.id === target),
        filtered: filtered.results.some((r) => r.id === target),
        browse: page.images.some((p) => p.id === target),
        total: page.total,
        dups: dups.groups.some((g) => g.photos.some((p) => p.id === target)),
        hiddenCount: dups.hiddenCount,
      };
    };
    const before = await seen();
    expect(before).toEqual({ similar: true, text: true, filtered: true, browse: true, total: ids.length, dups: true, hiddenCount: 0 });
    expect(repo.setHidden([target], true)).toEqual([target]);
    expect(await seen()).toEqual({ similar: false, text: false, filtered: false, browse: false, total: ids.length - 1, dups: false, hiddenCount: 1 });
    expect(repo.hidden(10).map((p) => p.id)).toEqual([target]);
    // An unknown id refuses the whole request and changes nothing.
    expect(() => repo.setHidden([target, 999_999], false)).toThrow(/no photo with id 999999/);
    expect(repo.hiddenCount()).toBe(1);
    expect(repo.setHidden([target], false)).toEqual([target]);
    expect(await seen()).toEqual(before);
  });

  it('trash moves the file into .clipdex-trash at the top of its root, its label survives, and undo puts back the same bytes, id and label', async () => {
    const target = idOf.get('sub/exact-copy.webp')!;
    const path = join(root, 'sub', 'exact-copy.webp');
    const bytes = await readFile(path);
    const mtime = (await stat(path)).mtimeMs;
    const label = library.pairs.add(idOf.get('resaved.jpg')!, 'a fish re-saved', 'train');
    const labeledTarget = idOf.get('resaved.jpg')!;
    const trash = new PhotoTrash(library.store);
    const engine = new QueryEngine(library);

    const moved = trash.trash(target);
    const second = trash.trash(labeledTarget);
    // Content no other file has and no label keeps: only the trash record keeps its embedding.
    const lone = idOf.get('second-resized.png')!;
    const third = trash.trash(lone);
    expect(moved.trashPath).toBe(join(root, TRASH_DIR_NAME, 'sub', 'exact-copy.webp'));
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
    expect(await readFile(moved.trashPath)).toEqual(bytes);
    expect(library.images.get(target)).toBeUndefined();
    expect((await engine.search({ terms: [{ imageId: ids[0]! }], limit: 100 })).results.map((r) => r.id)).not.toContain(target);
    // The label is kept (by content) while its photo is in the trash.
    expect(library.pairs.get(label.id)).toMatchObject({ caption: 'a fish re-saved' });
    // Garbage collection leaves a trashed photo's content alone: undo needs its embedding.
    new OrphansRepo(library.store.db, () => Date.now() + 365 * 86_400_000).collectGarbage(0);
    expect(new DuplicatesRepo(library.store.db).trashCount()).toBe(3);

    const restored = trash.restore(moved.trashId);
    expect(restored).toEqual({ trashId: moved.trashId, imageId: target, path, inLibrary: true });
    expect(await readFile(path)).toEqual(bytes);
    expect((await stat(path)).mtimeMs).toBe(mtime);
    await expect(stat(moved.trashPath)).rejects.toThrow(/ENOENT/);
    expect(library.images.get(target)).toMatchObject({ id: target, path, status: 'indexed' });
    trash.restore(second.trashId);
    trash.restore(third.trashId);
    expect(library.pairs.get(label.id)).toMatchObject({ imageId: labeledTarget, caption: 'a fish re-saved' });
    const similar = await engine.search({ terms: [{ imageId: ids[0]! }], limit: 100 });
    expect(similar.results.map((r) => r.id)).toEqual(expect.arrayContaining([target, labeledTarget, lone]));
    // Undone is undone: a second undo is refused, and nothing is in the trash any more.
    expect(() => trash.restore(moved.trashId)).toThrow(/already put back/);
    expect(trash.list()).toEqual([]);
  });

  it('never overwrites: a taken name in the trash gets " (2)", and undo refuses to replace a file now at the original path', async () => {
    const target = idOf.get('resized.webp')!;
    const path = join(root, 'resized.webp');
    const bytes = await readFile(path);
    await mkdir(join(root, TRASH_DIR_NAME), { recursive: true });
    await writeFile(join(root, TRASH_DIR_NAME, 'resized.webp'), 'already here');
    const trash = new PhotoTrash(library.store);
    const moved = trash.trash(target);
    expect(moved.trashPath).toBe(join(root, TRASH_DIR_NAME, 'resized (2).webp'));
    expect(await readFile(join(root, TRASH_DIR_NAME, 'resized.webp'), 'utf8')).toBe('already here');

    await writeFile(path, 'a new file the user put here');
    let refused: unknown;
    try {
      trash.restore(moved.trashId);
    } catch (err) {
      refused = err;
    }
    expect(isClipdexError(refused, 'FILE_MOVE_FAILED')).toBe(true);
    expect(String(refused)).toMatch(/another file is at .*resized\.webp now/);
    expect(await readFile(path, 'utf8')).toBe('a new file the user put here');
    expect(await readFile(moved.trashPath)).toEqual(bytes);
    await rm(path);
    trash.restore(moved.trashId);
    expect(await readFile(path)).toEqual(bytes);
    await rm(join(root, TRASH_DIR_NAME, 'resized.webp'));
  });

  it('a move that cannot happen is a clear error and changes nothing (file, row, index)', async () => {
    const other = join(tmp, 'blocked');
    await mkdir(other, { recursive: true });
    const file = join(other, 'photo.webp');
    await copyFile(join(root, 'resaved.jpg'), file);
    const [id] = await indexFiles(library, other, [file]);
    // A file where the trash folder would be: the folder cannot be made.
    await writeFile(join(other, TRASH_DIR_NAME), 'not a folder');
    let failure: unknown;
    try {
      new PhotoTrash(library.store).trash(id!);
    } catch (err) {
      failure = err;
    }
    expect(isClipdexError(failure, 'FILE_MOVE_FAILED')).toBe(true);
    expect(String(failure)).toMatch(/nothing was changed/);
    expect(library.images.get(id!)).toMatchObject({ path: file, status: 'indexed' });
    expect((await stat(file)).isFile()).toBe(true);
    expect(new DuplicatesRepo(library.store.db).trashCount()).toBe(0);
    expect(() => new PhotoTrash(library.store).trash(987_654)).toThrow(/no photo with id 987654/);
    expect(() => new PhotoTrash(library.store).restore(987_654)).toThrow(/nothing in the trash with id 987654/);
  });

  it('the scanner and the watcher never look inside .clipdex-trash', () => {
    const rules = createFileRules();
    expect(rules.isCandidateFile(`${TRASH_DIR_NAME}/a.jpg`)).toBe(false);
    expect(rules.isCandidateFile(`${TRASH_DIR_NAME}/sub/b.webp`)).toBe(false);
    expect(rules.isExcludedDir(TRASH_DIR_NAME)).toBe(true);
    expect(rules.isCandidateFile('sub/b.webp')).toBe(true);
  });

  describe('over HTTP', () => {
    let server: Server;
    let url: string;
    beforeAll(async () => {
      server = createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      server.on('request', createApp({ library, access: { host: '127.0.0.1', port, token: null } }).app);
      url = `http://127.0.0.1:${port}`;
    });
    afterAll(async () => {
      await new Promise((resolve) => server?.close(resolve));
    });
    const post = (path: string, body: unknown) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    it('GET /api/duplicates lists the groups with their paths and keeper; a bad threshold or flag is a 400 JSON error', async () => {
      const res = await fetch(`${url}/api/duplicates?threshold=0.02`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as DuplicatesReport;
      expect(body.threshold).toBe(0.02);
      expect(groupsOf(body)).toEqual(oracleGroups(library, library.requireModel().index.contents().ids, 0.02));
      expect(body.groups.length).toBeGreaterThan(0);
      for (const g of body.groups) {
        expect(g.photos.filter((p) => p.keeper).map((p) => p.id)).toEqual([g.keeperId]);
        expect(g.reason.length).toBeGreaterThan(5);
        for (const p of g.photos) expect(p.path.startsWith(tmp)).toBe(true);
      }
      for (const [query, message] of [
        ['threshold=0.5', /threshold.*0.001 to 0.1/],
        ['threshold=abc', /threshold/],
        ['rotations=maybe', /rotations/],
        ['neighbours=0', /neighbours/],
      ] as const) {
        const bad = await fetch(`${url}/api/duplicates?${query}`);
        expect(bad.status, query).toBe(400);
        const error = (await bad.json()) as { error: { code: string; message: string } };
        expect(error.error.code).toBe('INVALID_ARGUMENT');
        expect(error.error.message).toMatch(message);
      }
    });

    it('hide, unhide, trash and undo answer with what changed and the counts; bad ids are 4xx JSON errors', async () => {
      const target = idOf.get('second-resized.png')!;
      const hidden = await post('/api/duplicates/hide', { ids: [target] });
      expect(await hidden.json()).toEqual({ hidden: [target], hiddenCount: 1, trashCount: 0 });
      const list = (await (await fetch(`${url}/api/duplicates/hidden`)).json()) as { photos: { id: number }[]; hiddenCount: number };
      expect(list.photos.map((p) => p.id)).toEqual([target]);
      expect(await (await post('/api/duplicates/unhide', { ids: [target] })).json()).toEqual({ unhidden: [target], hiddenCount: 0, trashCount: 0 });

      const trashed = (await (await post('/api/duplicates/trash', { ids: [target] })).json()) as { trashed: { trashId: number; trashPath: string }[]; trashCount: number };
      expect(trashed.trashCount).toBe(1);
      expect(trashed.trashed[0]!.trashPath).toBe(join(root, TRASH_DIR_NAME, 'second-resized.png'));
      const inTrash = (await (await fetch(`${url}/api/duplicates/trash`)).json()) as { items: { id: number; imageId: number }[] };
      expect(inTrash.items.map((t) => t.imageId)).toEqual([target]);
      const undone = (await (await post('/api/duplicates/undo', { trashIds: [trashed.trashed[0]!.trashId] })).json()) as { restored: { imageId: number; path: string }[]; trashCount: number };
      expect(undone).toMatchObject({ restored: [{ imageId: target, path: join(root, 'second-resized.png'), inLibrary: true }], trashCount: 0 });

      for (const [path, body, status] of [
        ['/api/duplicates/hide', { ids: [999_999] }, 404],
        ['/api/duplicates/hide', { ids: [] }, 400],
        ['/api/duplicates/hide', { ids: ['x'] }, 400],
        ['/api/duplicates/hide', { ids: [1.5] }, 400],
        ['/api/duplicates/hide', { photos: [1] }, 400],
        ['/api/duplicates/unhide', { ids: [0] }, 400],
        ['/api/duplicates/trash', { ids: [999_999] }, 404],
        ['/api/duplicates/undo', { trashIds: [999_999] }, 404],
        ['/api/duplicates/undo', { trashIds: [trashed.trashed[0]!.trashId] }, 400],
        ['/api/duplicates/undo', {}, 400],
      ] as const) {
        const res = await post(path, body);
        expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(status);
        expect(res.headers.get('content-type')).toMatch(/application\/json/);
        expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/^[A-Z_]+$/);
      }
    });
  });

  it('clipdex duplicates --json prints the groups, each photo with its path; a bad --threshold exits 2 and says the range', async () => {
    const dataDir = join(tmp, 'data');
    // The CLI opens the same library: this process lets go of it first.
    await library.close();
    try {
      const r = await runCli(['--model', modelDir, '--data-dir', dataDir, 'duplicates', '--json', '--threshold', '0.01']);
      expect(r.code, r.stderr).toBe(0);
      const report = JSON.parse(r.stdout) as DuplicatesReport;
      expect(report.groups.length).toBeGreaterThan(0);
      for (const g of report.groups) for (const p of g.photos) expect(p.path).toMatch(new RegExp(`^${tmp.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      expect(report.groups.flatMap((g) => g.photos.map((p) => basename(p.path)))).toEqual(expect.arrayContaining(['exact-copy.webp', 'resaved.jpg']));

      const human = await runCli(['--model', modelDir, '--data-dir', dataDir, 'duplicates']);
      expect(human.code, human.stderr).toBe(0);
      expect(human.stdout).toMatch(/^g\d+: \d+ .*; keep \d+ \(.+\)$/m);
      expect(human.stdout).toMatch(/^ {2}\* +\d+ {2}keep/m);

      const bad = await runCli(['--model', modelDir, '--data-dir', dataDir, 'duplicates', '--threshold', '0.5']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--threshold must be a cosine distance from 0.001 to 0.1/);

      const id = String(ids[1]);
      const hide = await runCli(['--data-dir', dataDir, '--json', 'duplicates', 'hide', id]);
      expect(hide.code, hide.stderr).toBe(0);
      expect(JSON.parse(hide.stdout)).toEqual({ hidden: [ids[1]], hiddenCount: 1 });
      const unknown = await runCli(['--data-dir', dataDir, 'duplicates', 'trash', '999999']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/no photo with id 999999/);
      const notAnId = await runCli(['--data-dir', dataDir, 'duplicates', 'undo', 'abc']);
      expect(notAnId.code).toBe(2);
    } finally {
      library = await Library.open({ dataDir, model: modelDir });
    }
  }, 240_000);
});

describe('duplicates through the HNSW graph', () => {
  it('searchBatch answers as search does, and planted near-duplicates are grouped, near misses not', async () => {
    const { dir, cleanup } = tempLibraryDir('clipdex-dups-hnsw-');
    const lib = openTestLibrary(dir);
    try {
      const dim = 32;
      const n = 600;
      const vectors = clusteredVectors(n, dim, { seed: 5 });
      // Row 1 a near-duplicate of row 0 (distance ~0.002), row 3 a near miss of row 2 (~0.03).
      const nudge = (from: number, to: number, eps: number) => {
        let s = 0;
        for (let j = 0; j < dim; j++) {
          vectors[to * dim + j] = vectors[from * dim + j]! + eps * Math.sin(j * 12.9898 + from);
          s += vectors[to * dim + j]! ** 2;
        }
        for (let j = 0; j < dim; j++) vectors[to * dim + j]! /= Math.sqrt(s);
      };
      nudge(0, 1, 0.012);
      nudge(2, 3, 0.05);
      const ids = addIndexedImages(lib, 'k', vectors, dim);
      const index = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: 'k', exactBelow: 100, autoMerge: false });
      try {
        expect(index.health().engine).toBe('hnsw');
        const queries = ids.slice(0, 50).map((id) => index.vectorOf(id)!);
        const batch = await index.searchBatch(queries, 5);
        for (let i = 0; i < queries.length; i++) expect(batch[i]!.map((h) => h.id)).toEqual((await index.search(queries[i]!, 5)).map((h) => h.id));
        const report = await findDuplicates({ index, modelKey: 'k', db: lib.store.db, images: lib.images }, { threshold: 0.01 });
        const distance = (a: number, b: number) => 1 - [...index.vectorOf(a)!].reduce((s, x, j) => s + x * index.vectorOf(b)![j]!, 0);
        expect(distance(ids[0]!, ids[1]!)).toBeLessThan(0.01);
        expect(distance(ids[2]!, ids[3]!)).toBeGreaterThan(0.01);
        expect(groupsOf(report)).toContainEqual([ids[0]!, ids[1]!]);
        expect(report.groups.some((g) => g.photos.some((p) => p.id === ids[3]))).toBe(false);
        await expect(findDuplicates({ index, modelKey: 'k', db: lib.store.db, images: lib.images }, { rotations: true })).rejects.toThrow(/rotations need the image encoder/);
      } finally {
        await index.close();
      }
    } finally {
      lib.close();
      cleanup();
    }
  }, 120_000);
});
