/**
 * The timeline's API over a real HTTP server and library: GET /api/timeline counts photos per month (undated
 * ones by file time) with a cursor each, and GET /api/images pages date-desc by cursor — pages that join up
 * to exactly the whole library in order, start where a month's cursor says, and keep the filters.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import type { BrowseResponse, TimelineSummary } from '../src/search/query-engine.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-timeline-'));
const photos = join(tmp, 'photos');
let library: Library;
let server: RunningServer;

/** name, capture time (null: none), file time. Two share a capture second, as a burst does. */
const FIXTURE: [string, number | null, number][] = [
  ['a-2024-03-01.jpg', Date.UTC(2024, 2, 1, 9), Date.UTC(2025, 0, 1)],
  ['b-2024-03-01.jpg', Date.UTC(2024, 2, 1, 9), Date.UTC(2025, 0, 1)],
  ['c-2024-02-29.jpg', Date.UTC(2024, 1, 29, 23, 59), Date.UTC(2025, 0, 1)],
  ['d-2023-07-10.jpg', Date.UTC(2023, 6, 10, 12), Date.UTC(2025, 0, 1)],
  ['e-2023-07-25.jpg', Date.UTC(2023, 6, 25, 12), Date.UTC(2025, 0, 1)],
  ['f-2019-05-05.png', Date.UTC(2019, 4, 5, 12), Date.UTC(2025, 0, 1)],
  ['g-1969-12-31.jpg', Date.UTC(1969, 11, 31, 23), Date.UTC(2025, 0, 1)],
  ['u-2022-09.jpg', null, Date.UTC(2022, 8, 14, 8)],
  ['u-2022-08.png', null, Date.UTC(2022, 7, 2, 8)],
  ['u-2022-08b.jpg', null, Date.UTC(2022, 7, 1, 8)],
];
const byName = new Map<string, number>();

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  const files: string[] = [];
  for (const [i, [name, , mtime]] of FIXTURE.entries()) {
    const file = join(photos, name);
    await writeJpeg(file, i + 1);
    utimesSync(file, mtime / 1000, mtime / 1000);
    files.push(file);
  }
  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  const ids = await indexFiles(library, photos, files, (_f, i) => FIXTURE[i]![1]);
  ids.forEach((id, i) => byName.set(FIXTURE[i]![0], id));
  server = await startServer({ library, port: 0 });
}, 120_000);

afterAll(async () => {
  await server?.close();
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function get<T>(path: string): Promise<{ status: number; body: T & { error?: { code: string; message: string } } }> {
  const res = await fetch(`${server.url}${path}`);
  return { status: res.status, body: (await res.json()) as T & { error?: { code: string; message: string } } };
}

const names = (page: BrowseResponse) => page.images.map((p) => p.path.slice(photos.length + 1));

/** Every page from `first` on, following nextCursor. */
async function walk(first: string, limit: number, start: string | null = null): Promise<{ pages: BrowseResponse[]; all: string[] }> {
  const pages: BrowseResponse[] = [];
  let cursor: string | null = start;
  do {
    const q: string = cursor ? `${first}&cursor=${encodeURIComponent(cursor)}` : first;
    const { status, body } = await get<BrowseResponse>(`${q}&limit=${limit}`);
    expect(status, JSON.stringify(body)).toBe(200);
    pages.push(body);
    cursor = body.nextCursor;
    expect(pages.length).toBeLessThan(50);
  } while (cursor);
  return { pages, all: pages.flatMap(names) };
}

/** The library newest first: dated by capture time (a burst by id, newest first), then undated by file time. */
const NEWEST_FIRST = [
  'b-2024-03-01.jpg',
  'a-2024-03-01.jpg',
  'c-2024-02-29.jpg',
  'e-2023-07-25.jpg',
  'd-2023-07-10.jpg',
  'f-2019-05-05.png',
  'g-1969-12-31.jpg',
  'u-2022-09.jpg',
  'u-2022-08.png',
  'u-2022-08b.jpg',
];

describe('GET /api/images by cursor', () => {
  it('pages newest first, undated last by file time: pages of any size join up to the whole library, no repeats', async () => {
    for (const limit of [1, 3, 7, 10, 50]) {
      const { pages, all } = await walk('/api/images?sort=date-desc', limit);
      expect(all, `pages of ${limit}`).toEqual(NEWEST_FIRST);
      expect(pages.at(-1)!.hasMore).toBe(false);
      // The first page counts the library; a page by cursor does not read it all to count.
      expect(pages[0]!.total).toBe(FIXTURE.length);
      for (const p of pages.slice(1)) expect(p.total).toBeNull();
    }
  });

  it('agrees with offset paging, and carries each photo’s file time', async () => {
    const { body } = await get<BrowseResponse>('/api/images?limit=4&offset=4');
    expect(names(body)).toEqual(NEWEST_FIRST.slice(4, 8));
    expect(body.images.find((p) => p.path.endsWith('u-2022-09.jpg'))!.mtimeMs).toBe(FIXTURE[7]![2]);
  });

  it('keeps the filters: a folder, a format, dates (which leave out the undated photos)', async () => {
    const { all: jpeg } = await walk('/api/images?format=jpeg', 2);
    expect(jpeg).toEqual(NEWEST_FIRST);
    const { all: since } = await walk('/api/images?after=2023-01-01', 2);
    expect(since).toEqual(NEWEST_FIRST.slice(0, 5));
    const { all: none } = await walk(`/api/images?folder=${encodeURIComponent(join(tmp, 'elsewhere'))}`, 2);
    expect(none).toEqual([]);
  });

  it('refuses a cursor it did not give out, a cursor with another order or with an offset, in words', async () => {
    for (const bad of ['x', 'd_12', 'd_1.5_3', 'u_abc_1', `d_${'9'.repeat(30)}_1`]) {
      const r = await get<object>(`/api/images?cursor=${encodeURIComponent(bad)}`);
      expect(r.status, bad).toBe(400);
      expect(r.body.error!.message).toMatch(/cursor.*not a cursor this server gave out/);
    }
    const path = await get<object>('/api/images?cursor=u&sort=path');
    expect(path.status).toBe(400);
    expect(path.body.error!.message).toMatch(/date-desc order only/);
    const both = await get<object>('/api/images?cursor=u&offset=2');
    expect(both.status).toBe(400);
  });
});

describe('GET /api/timeline', () => {
  it('counts photos per month newest first, the undated ones after by file month, each month with its cursor', async () => {
    const { status, body } = await get<TimelineSummary>('/api/timeline');
    expect(status).toBe(200);
    expect(body.total).toBe(FIXTURE.length);
    expect(body.undated).toBe(3);
    expect(body.months.map(({ month, undated, count }) => ({ month, undated, count }))).toEqual([
      { month: '2024-03', undated: false, count: 2 },
      { month: '2024-02', undated: false, count: 1 },
      { month: '2023-07', undated: false, count: 2 },
      { month: '2019-05', undated: false, count: 1 },
      { month: '1969-12', undated: false, count: 1 },
      { month: '2022-09', undated: true, count: 1 },
      { month: '2022-08', undated: true, count: 2 },
    ]);
  });

  it('a month’s cursor starts the timeline at that month’s newest photo and goes on from there', async () => {
    const { body } = await get<TimelineSummary>('/api/timeline');
    let seen = 0;
    for (const m of body.months) {
      const { all } = await walk('/api/images?sort=date-desc', 2, m.cursor);
      expect(all, m.month).toEqual(NEWEST_FIRST.slice(seen));
      seen += m.count;
    }
  });

  it('keeps the filters, and refuses a bad one with 400', async () => {
    const since = (await get<TimelineSummary>('/api/timeline?after=2023-07-15')).body;
    expect(since.months.map((m) => [m.month, m.count])).toEqual([
      ['2024-03', 2],
      ['2024-02', 1],
      ['2023-07', 1],
    ]);
    expect(since.undated).toBe(0);
    const bad = await get<object>('/api/timeline?after=2023-02-30');
    expect(bad.status).toBe(400);
  });
});
