/**
 * The search filters' one rule (dates that exist, known formats and their aliases, whole numbers), as the
 * CLI (the built bin), the REST API (a real server) and the query engine each meet it, on a real library.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { parseParam } from '../src/validation/param-rules.js';
import { dateParam, formatListParam, limitParam } from '../src/validation/search-params.js';
import { QueryEngine, type BrowseResponse, type SearchResponse } from '../src/search/query-engine.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';
import { serveLibrary } from './helpers/served-library.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-filters-'));
const photos = join(tmp, 'photos');
const dataDir = join(tmp, 'data');
let model: string;
const files = [join(photos, 'a.jpg'), join(photos, 'b.jpg'), join(photos, 'c.jpg'), join(photos, 'd.png')];
// Noon UTC on 29 and 30 June, 1 and 2 July 2018: a rolled-over "31 June" would be 1 July.
const taken = [Date.UTC(2018, 5, 29, 12), Date.UTC(2018, 5, 30, 12), Date.UTC(2018, 6, 1, 12), Date.UTC(2018, 6, 2, 12)];

const cli = (...args: string[]) => runCli(['--data-dir', dataDir, '--model', model, ...args]);

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  for (let i = 0; i < 3; i++) await writeJpeg(files[i]!, i + 1);
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 10, g: 200, b: 90 } } }).png().toFile(files[3]!);
  model = await tinyModel(tmp);
  const library = await Library.open({ dataDir, model });
  try {
    await indexFiles(library, photos, files, (_f, i) => taken[i]!);
  } finally {
    await library.close();
  }
}, 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the rule', () => {
  it('takes only dates that exist, as days or ISO timestamps', () => {
    expect(parseParam(dateParam, '2018-06-30', 'after')).toBe(Date.UTC(2018, 5, 30));
    expect(parseParam(dateParam, '2020-02-29', 'after')).toBe(Date.UTC(2020, 1, 29));
    expect(parseParam(dateParam, '2000-02-29', 'after')).toBe(Date.UTC(2000, 1, 29));
    expect(parseParam(dateParam, '2018-06-30T10:00:00Z', 'after')).toBe(Date.UTC(2018, 5, 30, 10));
    expect(parseParam(dateParam, '2018-06-30T10:00:00+02:00', 'after')).toBe(Date.UTC(2018, 5, 30, 8));
    for (const bad of ['2018-06-31', '2019-02-29', '1900-02-29', '2018-13-01', '2018-00-10', '2018-04-31T10:00:00Z', '2018-06-30T25:00:00Z', '2018-6-3', 'yesterday', '']) {
      expect(() => parseParam(dateParam, bad, '--after'), bad).toThrow(/--after must be a real date as YYYY-MM-DD/);
    }
  });

  it('names formats as the store does, from their aliases in any case, and lists the valid ones for an unknown one', () => {
    expect(parseParam(formatListParam, 'jpg,PNG, tif,HEIF,jpeg', 'format')).toEqual(['jpeg', 'png', 'tiff', 'heic']);
    expect(parseParam(formatListParam, ['JPE', 'webp'], 'format')).toEqual(['jpeg', 'webp']);
    expect(() => parseParam(formatListParam, 'jpg,xyz', '--format')).toThrow(/--format names an unknown format: "xyz"; valid formats: jpeg \(jpg.*png.*tiff \(tif\).*heic \(heif/);
    expect(() => parseParam(formatListParam, ',', '--format')).toThrow(/at least one format/);
  });

  it('takes whole numbers only, in range', () => {
    expect(parseParam(limitParam, '20', '--limit')).toBe(20);
    for (const bad of ['1e2', '0x10', '', '2.5', '0', '501', 'ten']) expect(() => parseParam(limitParam, bad, '--limit'), bad).toThrow(/--limit must be an integer from 1 to 500/);
  });
});

describe('the CLI', () => {
  it('refuses an impossible date with exit 2, for searches and the list alike, instead of rolling it over', async () => {
    for (const args of [['list', '--after', '2018-06-31'], ['list', '--before', '2019-02-29'], ['search', 'a photo', '--after', '2018-06-31']]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(/must be a real date as YYYY-MM-DD/);
    }
    const june30 = JSON.parse((await cli('--json', 'list', '--after', '2018-06-30')).stdout) as BrowseResponse;
    expect(june30.images.map((p) => p.path).sort()).toEqual(files.slice(1).sort());
  });

  it('takes jpg for jpeg (any case) and refuses an unknown format with exit 2 and the valid ones', async () => {
    const jpg = JSON.parse((await cli('--json', 'list', '--format', 'JPG')).stdout) as BrowseResponse;
    expect(jpg.images.map((p) => p.path).sort()).toEqual(files.slice(0, 3).sort());
    const found = JSON.parse((await cli('--json', 'search', 'a photo', '--format', 'jpg')).stdout) as SearchResponse;
    expect(found.results.map((p) => p.path).sort()).toEqual(files.slice(0, 3).sort());
    for (const args of [['search', 'a photo', '--format', 'xyz'], ['list', '--format', 'png,xyz']]) {
      const r = await cli(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/unknown format: "xyz"; valid formats: jpeg \(jpg/);
      expect(r.stdout).toBe('');
    }
  });

  it('refuses a limit that is not a whole number in range', async () => {
    const r = await cli('list', '--limit', '1e2');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--limit must be an integer from 1 to 500, got "1e2"/);
  });
});

describe('the API and the engine', () => {
  const served = serveLibrary(() => ({ dataDir, model }));

  const api = served.api;
  const post = (body: unknown) => served.postJson('/api/search', body);

  it('answers an impossible date with 400 on every route that filters', async () => {
    for (const path of ['/api/search?q=photo&after=2018-06-31', '/api/images?before=2019-02-29', '/api/images/1/similar?after=2018-04-31']) {
      const r = await api(path);
      expect(r.status, path).toBe(400);
      expect(r.body.error.code, path).toBe('INVALID_ARGUMENT');
      expect(r.body.error.message, path).toMatch(/must be a real date/);
    }
    expect((await post({ terms: [{ text: 'photo' }], after: '2018-06-31' })).status).toBe(400);
    const june30 = await api('/api/images?after=2018-06-30');
    expect(june30.body.total).toBe(3);
  });

  it('takes format aliases in a query string and in a JSON body, and refuses an unknown format with the valid ones', async () => {
    expect((await api('/api/images?format=jpg')).body.total).toBe(3);
    expect((await api('/api/images?format=JPEG,png')).body.total).toBe(4);
    const body = await post({ terms: [{ text: 'photo' }], format: ['JPG'] });
    expect(body.status).toBe(200);
    expect(body.body.results.map((r: { path: string }) => r.path).sort()).toEqual(files.slice(0, 3).sort());
    for (const r of [await api('/api/search?q=photo&format=xyz'), await post({ terms: [{ text: 'photo' }], format: ['xyz'] })]) {
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('INVALID_ARGUMENT');
      expect(r.body.error.message).toMatch(/unknown format: "xyz"; valid formats: jpeg \(jpg/);
    }
  });

  it('holds a library caller to the same rule: aliases resolve, unknown formats and bad numbers are refused', async () => {
    const engine = new QueryEngine(served.library);
    expect(engine.browse({ filter: { formats: ['Jpg'] } }).total).toBe(3);
    expect((await engine.search({ terms: [{ text: 'photo' }], filter: { formats: ['tif', 'PNG'] } })).results.map((r) => r.path)).toEqual([files[3]]);
    await expect(engine.search({ terms: [{ text: 'photo' }], filter: { formats: ['xyz'] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/valid formats/) });
    expect(() => engine.browse({ limit: 2.5 })).toThrow(/limit must be an integer from 1 to 500/);
  });
});
