/**
 * Failed files while the watcher runs: their error records (what `GET /api/errors` and
 * `clipdex status --errors` list) follow renames, moves and deletions like any other photo's row.
 */
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { IngestEvent } from '../src/ingest/ingest-events.js';
import type { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { jpegBytes, waitFor } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';

let tmp: string;
let root: string;
let lib: Library;
let engine: IngestEngine;
const events: IngestEvent[] = [];

/** The error records as the API and the CLI list them. */
const errorRecords = () =>
  lib.images.listByStatus('error', 1000, 0).map((r) => ({ id: r.id, path: r.path, code: r.errorCode, message: r.errorMessage }));

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-failed-'));
  const modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 7 })).dir;
  root = join(tmp, 'photos');
  await mkdir(join(root, 'album'), { recursive: true });
  lib = await openLibrary(join(tmp, 'data'), modelDir);
  engine = await IngestEngine.start(lib, { roots: [root], stableMs: 400, debounceMs: 50, onEvent: (e) => events.push(e) });
  await engine.idle();
});
afterAll(async () => {
  await engine?.close();
  await lib?.close();
  await rm(tmp, { recursive: true, force: true });
});

describe('a failed file under a running watcher', () => {
  let id = 0;

  it('is recorded with its reason', async () => {
    const bad = join(root, 'corrupt.jpg');
    const full = await jpegBytes(1, 200, 150);
    await writeFile(bad, full.subarray(0, full.length >> 1));
    const [record] = await waitFor(() => (errorRecords().length > 0 ? errorRecords() : undefined), 'the error record');
    expect(record).toMatchObject({ path: bad, code: 'DECODE_FAILED' });
    // The message names the file (the CLI and the web page show it as the reason): it must follow the file.
    expect(record!.message).toContain(bad);
    id = record!.id;
  });

  it('renamed: its error record shows the new path, and only that', async () => {
    const from = join(root, 'corrupt.jpg');
    const to = join(root, 'renamed.jpg');
    await rename(from, to);
    await waitFor(() => errorRecords().some((r) => r.path === to) && !errorRecords().some((r) => r.path === from), 'the record to follow the rename', 20_000);
    await engine.idle();
    expect(errorRecords()).toEqual([{ id, path: to, code: 'DECODE_FAILED', message: expect.stringContaining(to) }]);
    expect(errorRecords()[0]!.message).not.toContain(from);
    // Not read again: nothing about it was new.
    expect(events.filter((e) => e.type === 'error')).toHaveLength(1);
  });

  it('moved into a folder: the record follows it there', async () => {
    const from = join(root, 'renamed.jpg');
    const to = join(root, 'album', 'renamed.jpg');
    await rename(from, to);
    await waitFor(() => errorRecords().some((r) => r.path === to) && !errorRecords().some((r) => r.path === from), 'the record to follow the move', 20_000);
    await engine.idle();
    expect(errorRecords()).toEqual([{ id, path: to, code: 'DECODE_FAILED', message: expect.stringContaining(to) }]);
    expect(errorRecords()[0]!.message).not.toContain(from);
  });

  it('its folder renamed: the record follows', async () => {
    const to = join(root, 'album-2', 'renamed.jpg');
    await rename(join(root, 'album'), join(root, 'album-2'));
    await waitFor(() => errorRecords().some((r) => r.path === to), 'the record to follow the folder', 20_000);
    await engine.idle();
    expect(errorRecords()).toEqual([{ id, path: to, code: 'DECODE_FAILED', message: expect.stringContaining(to) }]);
  });

  it('deleted: its error record goes', async () => {
    const path = join(root, 'album-2', 'renamed.jpg');
    await rm(path);
    await waitFor(() => errorRecords().length === 0, 'the record to go', 20_000);
    expect(events).toContainEqual(expect.objectContaining({ type: 'removed', path }));
  });
});

describe('a failed file renamed while clipdex was not running', () => {
  it('keeps its record under the new name after the next scan', async () => {
    const dir = join(tmp, 'stopped');
    await mkdir(dir);
    const from = join(dir, 'broken.jpg');
    const to = join(dir, 'still-broken.jpg');
    await writeFile(from, 'a shopping list, not a photo');
    const other = await openLibrary(join(tmp, 'data-stopped'), join(tmp, 'model'));
    try {
      let run = await IngestEngine.start(other, { roots: [dir], watch: false });
      await run.idle();
      await run.close();
      const [before] = other.images.listByStatus('error', 10, 0);
      expect(before).toMatchObject({ path: from, errorCode: 'NOT_AN_IMAGE', errorMessage: expect.stringContaining(from) });
      await rename(from, to);
      run = await IngestEngine.start(other, { watch: false });
      await run.idle();
      await run.close();
      const after = other.images.listByStatus('error', 10, 0);
      expect(after).toHaveLength(1);
      // Renamed in place or recorded afresh (the pipeline may read the new name before the sweep sees the old
      // one go): either way one record, under the new name.
      expect(after[0]).toMatchObject({ path: to, errorCode: 'NOT_AN_IMAGE', errorMessage: expect.stringContaining(to) });
      expect(after[0]!.errorMessage).not.toContain(from);
    } finally {
      await other.close();
    }
  });
});
