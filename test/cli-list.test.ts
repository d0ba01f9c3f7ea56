/** `clipdex list` as a user runs it (the built CLI) on a real library: the photos themselves, without a query. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import type { BrowseResponse } from '../src/search/query-engine.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

describe('clipdex list', () => {
  let tmp: string;
  let model: string;
  const files: string[] = [];
  const DAY = 86_400_000;

  const cli = (...args: string[]) => runCli(['--data-dir', join(tmp, 'data'), '--model', model, '--cache-dir', join(tmp, 'cache'), ...args]);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'clipdex-cli-list-'));
    model = await tinyModel(tmp);
    const photos = join(tmp, 'photos');
    mkdirSync(join(photos, 'trip'), { recursive: true });
    for (let i = 0; i < 6; i++) {
      const file = join(photos, i < 2 ? 'trip' : '', `p${i}.jpg`);
      await writeJpeg(file, i + 1);
      files.push(file);
    }
    const library = await Library.open({ dataDir: join(tmp, 'data'), model, cacheDir: join(tmp, 'cache') });
    try {
      // p5 has no capture date; the others one day apart, p0 the oldest.
      await indexFiles(library, photos, files, (_f, i) => (i === 5 ? null : Date.UTC(2023, 5, 1) + i * DAY));
    } finally {
      await library.close();
    }
  }, 60_000);

  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('prints the newest first with their dates, undated last, and says how to get more', async () => {
    const r = await cli('list', '-k', '3');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([`2023-06-05  ${files[4]}`, `2023-06-04  ${files[3]}`, `2023-06-03  ${files[2]}`]);
    expect(r.stderr).toMatch(/3 of 6; more: --offset 3/);
    const rest = await cli('list', '--offset', '3');
    expect(rest.stdout.trim().split('\n')).toEqual([`2023-06-02  ${files[1]}`, `2023-06-01  ${files[0]}`, `undated     ${files[5]}`]);
  });

  it('sorts oldest first or by path, filters like a search, and answers JSON with --json', async () => {
    const oldest = JSON.parse((await cli('--json', 'list', '--sort', 'date-asc')).stdout) as BrowseResponse;
    expect(oldest.images.map((p) => p.path)).toEqual([...files.slice(0, 5), files[5]]);
    expect(oldest).toMatchObject({ total: 6, hasMore: false, offset: 0, limit: 50 });
    const byPath = JSON.parse((await cli('--json', 'list', '--sort', 'path')).stdout) as BrowseResponse;
    expect(byPath.images.map((p) => p.path)).toEqual([...files].sort());
    const trip = JSON.parse((await cli('--json', 'list', '--folder', join(tmp, 'photos', 'trip'))).stdout) as BrowseResponse;
    expect(trip.images.map((p) => p.path).sort()).toEqual(files.slice(0, 2).sort());
    const june3on = JSON.parse((await cli('--json', 'list', '--after', '2023-06-03')).stdout) as BrowseResponse;
    expect(june3on.total).toBe(3);
    const none = await cli('list', '--folder', join(tmp, 'nowhere'));
    expect([none.code, none.stdout, none.stderr]).toEqual([0, '', 'no photos\n']);
    const bad = await cli('list', '--sort', 'relevance');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/Allowed choices are date-desc, date-asc, path/);
  });

  it('says where the photos are when the offset is past the end, rather than printing nothing', async () => {
    const r = await cli('list', '--offset', '5000');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('no photos at offset 5000 (6 in all)\n');
  });
});
