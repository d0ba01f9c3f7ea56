/**
 * Only what is inside the folder the user chose is served. A root given as a symlink and pointed at another
 * folder after indexing goes offline with the reason, and its photos' files are refused, until the user
 * confirms the new folder; a file changed on disk since it was indexed is refused until it is re-indexed.
 * Real library and engine on the tiny model, real symlinks, real HTTP server.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, renameSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { Library } from '../src/library/library.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { waitFor, writeJpeg } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';
import { runCli } from './helpers/cli.js';
import { tinyModel } from './helpers/library-fixture.js';
import { LateIngest } from '../src/server/late-ingest.js';

const MTIME = new Date('2024-03-01T10:00:00Z');

let tmp: string;
let modelDir: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-retarget-'));
  modelDir = await tinyModel(tmp);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function get(server: RunningServer, path: string) {
  const res = await fetch(`${server.url}${path}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  let body: unknown = null;
  try {
    body = JSON.parse(bytes.toString('utf8'));
  } catch {
    /* a file */
  }
  return { status: res.status, type: res.headers.get('content-type'), bytes, body: body as { error?: { code: string; message: string } } | null };
}

/**
 * A library, its engine (no watcher: the checks below must not depend on watch events) and a server that
 * sees the engine as `clipdex serve` gives it, through LateIngest (which once dropped confirmRoot: 503).
 */
async function setUp(name: string, root: string) {
  const library: Library = await openLibrary(join(tmp, name, 'data'), modelDir);
  const engine = await IngestEngine.start(library, { roots: [root], watch: false, stableMs: 0, offlineCheckMs: 100 });
  await engine.idle();
  const server = await startServer({ library, port: 0, ingest: new LateIngest(async () => engine, (err) => { throw err; }) });
  const close = async () => {
    await server.close();
    await engine.close();
    await library.close();
  };
  return { library, engine, server, close };
}

const idOf = (library: Library, path: string) => library.images.getByPath(path)?.id;

describe('a symlinked root pointed at another folder', () => {
  it('refuses the new target\'s file of the same name, goes offline with the reason, and after confirm indexes the new folder', async () => {
    const base = join(tmp, 'retarget');
    const chosen = join(base, 'chosen');
    const other = join(base, 'other');
    mkdirSync(chosen, { recursive: true });
    mkdirSync(other);
    const photo = join(chosen, 'photo.jpg');
    const original = await writeJpeg(photo, 1);
    utimesSync(photo, MTIME, MTIME);
    // The stand-in has the same name, size and mtime: only the root's identity tells them apart.
    const secret = Buffer.alloc(original.length, 'secret! ');
    writeFileSync(join(other, 'photo.jpg'), secret);
    utimesSync(join(other, 'photo.jpg'), MTIME, MTIME);
    const fresh = await writeJpeg(join(other, 'new.jpg'), 2);
    const link = join(base, 'photos');
    symlinkSync(chosen, link);

    const { library, engine, server, close } = await setUp('retarget', link);
    try {
      const id = idOf(library, join(link, 'photo.jpg'));
      expect(id).toBeDefined();
      const before = await get(server, `/api/images/${id}/file`);
      expect(before.status).toBe(200);
      expect(before.bytes.equals(original)).toBe(true);

      // Retarget the link (atomically, as `ln -sfn` does).
      symlinkSync(other, `${link}.tmp`);
      renameSync(`${link}.tmp`, link);

      const refused = await get(server, `/api/images/${id}/file`);
      expect(refused.status).toBe(409);
      expect(refused.body?.error?.code).toBe('ROOT_RETARGETED');
      expect(refused.bytes.includes(secret)).toBe(false);
      const reason = `the folder at ${link} is now a different folder (it was retargeted); confirm to use the new one`;
      expect(refused.body?.error?.message).toBe(reason);

      const rootId = library.roots.getByPath(link)!.id;
      const offline = await waitFor(async () => {
        const { roots } = (await (await fetch(`${server.url}/api/roots`)).json()) as { roots: { id: number; state: string; stateReason: string | null }[] };
        const root = roots.find((r) => r.id === rootId);
        return root?.state === 'offline' ? root : undefined;
      }, 'the root to go offline');
      expect(offline.stateReason).toBe(reason);
      // A scan asked for meanwhile does not index the stand-in either.
      await engine.rescan(rootId);
      expect(idOf(library, join(link, 'new.jpg'))).toBeUndefined();
      expect(library.roots.get(rootId)?.state).toBe('offline');
      expect((await get(server, `/api/images/${id}/file`)).status).toBe(409);

      const confirm = await fetch(`${server.url}/api/roots/${rootId}/confirm`, { method: 'POST' });
      expect(confirm.status).toBe(200);
      await waitFor(() => library.roots.get(rootId)?.state === 'ok', 'the confirmed root to come back');
      await engine.idle();
      const newId = idOf(library, join(link, 'new.jpg'));
      expect(library.images.get(newId!)?.status).toBe('indexed');
      const served = await get(server, `/api/images/${newId}/file`);
      expect(served.status).toBe(200);
      expect(served.bytes.equals(fresh)).toBe(true);
      // The stand-in with the old photo's name, size and mtime was read anew, not taken for the old photo.
      const row = library.images.getByPath(join(link, 'photo.jpg'));
      expect(row?.status).toBe('error');
    } finally {
      await close();
    }
  });
});

describe('a file changed on disk since it was indexed', () => {
  it('is refused with FILE_CHANGED until it is re-indexed', async () => {
    const root = join(tmp, 'changed', 'photos');
    mkdirSync(root, { recursive: true });
    const path = join(root, 'a.jpg');
    await writeJpeg(path, 5);
    utimesSync(path, MTIME, MTIME);
    const { library, engine, server, close } = await setUp('changed', root);
    try {
      const id = idOf(library, path)!;
      expect((await get(server, `/api/images/${id}/file`)).status).toBe(200);

      // Same size, other mtime.
      const later = new Date(MTIME.getTime() + 60_000);
      utimesSync(path, later, later);
      const touched = await get(server, `/api/images/${id}/file`);
      expect(touched.status).toBe(409);
      expect(touched.body?.error?.code).toBe('FILE_CHANGED');

      // Other content and size, old mtime put back.
      const replaced = await writeJpeg(path, 6, 80, 60);
      utimesSync(path, MTIME, MTIME);
      expect(statSync(path).size).not.toBe(library.images.get(id)!.size);
      const refused = await get(server, `/api/images/${id}/file`);
      expect(refused.status).toBe(409);
      expect(refused.body?.error?.code).toBe('FILE_CHANGED');
      expect(refused.bytes.includes(replaced)).toBe(false);

      await engine.rescan();
      await engine.idle();
      const served = await get(server, `/api/images/${id}/file`);
      expect(served.status).toBe(200);
      expect(served.bytes.equals(readFileSync(path))).toBe(true);
    } finally {
      await close();
    }
  });
});

describe('clipdex roots confirm', () => {
  it('accepts the new folder of a retargeted root, which the next scan then indexes', async () => {
    const base = join(tmp, 'cli');
    mkdirSync(join(base, 'chosen'), { recursive: true });
    mkdirSync(join(base, 'other'));
    await writeJpeg(join(base, 'chosen', 'a.jpg'), 7);
    await writeJpeg(join(base, 'other', 'b.jpg'), 8);
    const link = join(base, 'photos');
    symlinkSync(join(base, 'chosen'), link);
    const dataDir = join(base, 'data');
    const run = async (check: (library: Library, engine: IngestEngine) => void | Promise<void>) => {
      const library = await openLibrary(dataDir, modelDir);
      const engine = await IngestEngine.start(library, { roots: [link], watch: false, stableMs: 0 });
      try {
        await engine.idle();
        await check(library, engine);
      } finally {
        await engine.close();
        await library.close();
      }
    };
    await run((library) => expect(idOf(library, join(link, 'a.jpg'))).toBeDefined());
    symlinkSync(join(base, 'other'), `${link}.tmp`);
    renameSync(`${link}.tmp`, link);
    // Started again, the engine's scan finds the root retargeted and leaves the new folder alone.
    await run((library) => {
      expect(library.roots.getByPath(link)?.state).toBe('offline');
      expect(library.roots.getByPath(link)?.stateReason).toContain('(it was retargeted)');
      expect(idOf(library, join(link, 'b.jpg'))).toBeUndefined();
    });
    const r = await runCli(['--data-dir', dataDir, 'roots', 'confirm', link]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(join(base, 'other'));
    await run((library) => {
      expect(library.roots.getByPath(link)?.state).toBe('ok');
      expect(library.images.get(idOf(library, join(link, 'b.jpg'))!)?.status).toBe('indexed');
      expect(idOf(library, join(link, 'a.jpg'))).toBeUndefined();
    });
  });
});
