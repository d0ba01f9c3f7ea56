/**
 * The home timeline and the relevance cut-off in headless Chromium, against the real `clipdex serve` (built
 * CLI, self-built tiny model) on a folder of photos with EXIF capture dates over ten months and a few
 * without one. The timeline: month and day headers newest first, the next page as the end scrolls into view,
 * a jump to a month not loaded yet (and back), the filters narrowing it, undated photos last and marked,
 * selection and the viewer on its cards. The cut-off: a search shows its strong matches, widening shows
 * the weaker ones below a divider, narrowing hides them again. Every wait is for a response or an element.
 */
import { mkdir, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { chromium, type Browser, type Page, type Response } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import type { BrowseResponse, SearchResponse, TimelineSummary } from '../../src/search/query-engine.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from '../helpers/e2e-server.js';
import { projectRoot } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');
// This project type-checks without the DOM library: code run in the page sees its objects untyped.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Browserish = any;

const DAY = 86_400_000;
/** 75 dated photos, four days apart from 28 June 2024 back (to 6 September 2023), then 5 without a date. */
const DATED = 75;
const UNDATED = 5;
const takenOf = (i: number) => Date.UTC(2024, 5, 28, 12) - i * 4 * DAY;
const exifDate = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ').replace(/-/g, ':');

/** A picture of its own; photos 0–2 are near-copies of one picture, so a search for one of them splits. */
async function photo(path: string, i: number, taken: number | null): Promise<void> {
  const k = i < 3 ? 0 : i;
  const bg = { r: (k * 67) % 256, g: (k * 131 + 40) % 256, b: (k * 29 + 90) % 256 };
  const img = sharp({ create: { width: 96, height: 72, channels: 3, background: bg } })
    .composite([{ input: { create: { width: 20 + (k % 5) * 10, height: 30, channels: 3, background: { r: 255 - bg.r, g: 255 - bg.g, b: 255 - bg.b } } }, left: 5 + (k % 7) * 6 + (i < 3 ? i : 0), top: 5 + (k % 4) * 8 }])
    .jpeg({ quality: 90 });
  await (taken === null ? img : img.withExif({ IFD2: { DateTimeOriginal: exifDate(taken) } })).toFile(path);
}

describe.skipIf(!HAS_CHROMIUM)(`the timeline and the relevance cut-off in headless Chromium ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  const pageProblems: string[] = [];
  const failedResponses: string[] = [];

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${server.url}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  const isPath = (r: Response, path: string) => new URL(r.url()).pathname === path;
  const timelineIds = () => page.$$eval('#timeline-list .card', (cards) => cards.map((c) => Number((c as Browserish).dataset.id)));
  const months = () => page.$$eval('#timeline-list .timeline-month', (hs) => hs.map((h) => (h as Browserish).dataset.month as string));
  const visibleResultIds = () => page.$$eval('#results .card', (cards) => cards.filter((c) => (c as Browserish).offsetParent !== null).map((c) => Number((c as Browserish).dataset.id)));
  /** The whole library newest first, as the API pages it. */
  async function library(query = ''): Promise<BrowseResponse['images']> {
    const all: BrowseResponse['images'] = [];
    let cursor: string | null = null;
    do {
      const page: BrowseResponse = await api<BrowseResponse>(`/api/images?limit=500${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      all.push(...page.images);
      cursor = page.nextCursor;
    } while (cursor);
    return all;
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-timeline-'));
    const photos = join(tmp, 'photos');
    await mkdir(photos, { recursive: true });
    for (let i = 0; i < DATED + UNDATED; i++) {
      const file = join(photos, `p${String(i).padStart(2, '0')}.jpg`);
      await photo(file, i, i < DATED ? takenOf(i) : null);
      // Undated photos carry file times in 2022, a month apart: their own months at the end.
      if (i >= DATED) await utimes(file, Date.UTC(2022, i - DATED, 10) / 1000, Date.UTC(2022, i - DATED, 10) / 1000);
    }
    await mkdir(ARTIFACTS, { recursive: true });
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 7 });
    server = await startServe(['--model', model.dir], ['--root', photos], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    await eventually(async () => {
      const s = await api<{ indexed: number; pending: number }>('/api/status');
      return s.indexed >= DATED + UNDATED && s.pending === 0;
    }, `the photos indexed\n${server.log()}`, 120_000);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, colorScheme: 'light', locale: 'en-US' });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    watchPage(page, pageProblems, { failedResponses });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  /** A freshly loaded page, on the timeline's first page. */
  async function home(): Promise<void> {
    const first = page.waitForResponse((r) => isPath(r, '/api/images'));
    await page.goto(server.url);
    await first;
    await page.waitForSelector('#timeline:not([hidden]):not([aria-busy]) #timeline-list .card');
  }

  beforeEach(home);

  describe('the timeline', () => {
    it('opens on the library newest first: month and day headers, the first page, the jump list', async () => {
      const all = await library();
      const ids = await timelineIds();
      expect(ids).toEqual(all.slice(0, 60).map((p) => p.id));
      expect(await months()).toEqual(['d-2024-06', 'd-2024-05', 'd-2024-04', 'd-2024-03', 'd-2024-02', 'd-2024-01', 'd-2023-12', 'd-2023-11'].slice(0, (await months()).length));
      expect(await page.textContent('#timeline-list .timeline-month')).toContain('June 2024');
      // Four days apart: the first day header is 28 June, the next 24 June.
      const days = await page.$$eval('#timeline-list .timeline-day', (hs) => hs.slice(0, 2).map((h) => (h as Browserish).dataset.day));
      expect(days).toEqual(['d-2024-06-28', 'd-2024-06-24']);
      expect(await page.textContent('#timeline-summary')).toBe(`${DATED + UNDATED} photos · newest first · ${UNDATED} without a capture date, at the end`);
      const summary = await api<TimelineSummary>('/api/timeline');
      const options = await page.$$eval('#timeline-jump option', (os) => os.map((o) => (o as Browserish).value).filter(Boolean));
      expect(options).toEqual(summary.months.map((m) => `${m.undated ? 'u' : 'd'}-${m.month}`));
      expect(await page.isHidden('#empty-state')).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'timeline-01-home.png') });
    });

    it('loads the next page when the end scrolls into view, and marks the undated photos at the end', async () => {
      const next = page.waitForResponse((r) => isPath(r, '/api/images') && new URL(r.url()).searchParams.has('cursor'));
      await page.locator('#timeline .more').scrollIntoViewIfNeeded();
      await next;
      await eventually(async () => (await timelineIds()).length === DATED + UNDATED, 'every photo on the timeline');
      const all = await library();
      expect(await timelineIds()).toEqual(all.map((p) => p.id));
      expect(await page.isHidden('#timeline-more')).toBe(true);
      // The undated ones: last, under their file months, each marked.
      const undatedIds = all.filter((p) => p.takenAt === null).map((p) => p.id);
      expect(undatedIds).toHaveLength(UNDATED);
      const marked = await page.$$eval('#timeline-list .tile.undated', (tiles) => tiles.map((t) => Number((t as Browserish).dataset.id)));
      expect(marked).toEqual(undatedIds);
      expect(await page.$$eval('#timeline-list .tile.undated .tile-undated', (m) => m.length)).toBe(UNDATED);
      const undatedMonths = (await months()).filter((m) => m.startsWith('u-'));
      expect(undatedMonths).toEqual(['u-2022-05', 'u-2022-04', 'u-2022-03', 'u-2022-02', 'u-2022-01']);
      expect(await page.textContent('#timeline-list .timeline-month.timeline-undated')).toContain('no capture date');
      await page.screenshot({ path: join(ARTIFACTS, 'timeline-02-undated.png'), fullPage: true });
    });

    it('jumps to a month not loaded yet, and back to the newest', async () => {
      const summary = await api<TimelineSummary>('/api/timeline');
      const oldest = summary.months.filter((m) => !m.undated).at(-1)!;
      expect(oldest.month).toBe(new Date(takenOf(DATED - 1)).toISOString().slice(0, 7));
      const jumped = page.waitForResponse((r) => isPath(r, '/api/images') && new URL(r.url()).searchParams.get('cursor') === oldest.cursor);
      await page.selectOption('#timeline-jump', `d-${oldest.month}`);
      await jumped;
      await eventually(async () => (await months())[0] === `d-${oldest.month}`, `the timeline to start at ${oldest.month}`);
      const first = (await library()).find((p) => p.takenAt !== null && new Date(p.takenAt).toISOString().startsWith(oldest.month))!;
      expect((await timelineIds())[0]).toBe(first.id);
      expect(await page.isVisible('#timeline-newest')).toBe(true);
      const back = page.waitForResponse((r) => isPath(r, '/api/images') && !new URL(r.url()).searchParams.has('cursor'));
      await page.click('#timeline-newest');
      await back;
      await eventually(async () => (await months())[0] === 'd-2024-06', 'the newest month first again');
      expect(await page.isHidden('#timeline-newest')).toBe(true);
      // A month already on screen is scrolled to, not fetched again.
      await page.selectOption('#timeline-jump', 'd-2024-03');
      await eventually(() => page.$eval('[data-month="d-2024-03"]', (h) => (h as Browserish).getBoundingClientRect().top < 200), 'March 2024 at the top of the window');
    });

    it('narrows with the filters: a start date leaves later photos only (and no undated ones)', async () => {
      await page.click('#filters-toggle');
      const summarised = page.waitForResponse((r) => isPath(r, '/api/timeline') && new URL(r.url()).searchParams.get('after') === '2024-03-01');
      const listed = page.waitForResponse((r) => isPath(r, '/api/images') && new URL(r.url()).searchParams.get('after') === '2024-03-01');
      await page.fill('#filter-from', '2024-03-01');
      await summarised;
      await listed;
      const expected = await library('&after=2024-03-01');
      expect(expected.length).toBeGreaterThan(0);
      expect(expected.length).toBeLessThan(DATED);
      await eventually(async () => JSON.stringify(await timelineIds()) === JSON.stringify(expected.map((p) => p.id)), 'the narrowed timeline');
      expect(await months()).toEqual(['d-2024-06', 'd-2024-05', 'd-2024-04', 'd-2024-03']);
      expect(await page.textContent('#timeline-summary')).toBe(`${expected.length} photos · newest first`);
    });

    it('selects timeline photos for labeling and opens them in the viewer, arrows browsing in timeline order', async () => {
      const ids = await timelineIds();
      await page.click(`#timeline-list .card[data-id="${ids[1]}"]`, { modifiers: ['Control'] });
      await page.click(`#timeline-list .card[data-id="${ids[4]}"]`, { modifiers: ['Control'] });
      expect(await page.textContent('#selection-count')).toBe('2 photos selected');
      expect(await page.$$eval('#timeline-list .tile.selected', (t) => t.map((x) => Number((x as Browserish).dataset.id)))).toEqual([ids[1], ids[4]]);
      await page.click('#select-clear');
      await page.click(`#timeline-list .card[data-id="${ids[0]}"]`);
      await page.waitForSelector('#viewer[open]');
      const all = await library();
      expect(await page.textContent('#viewer-title')).toBe(basename(all[0]!.path));
      await page.keyboard.press('ArrowRight');
      await eventually(async () => (await page.textContent('#viewer-title')) === basename(all[1]!.path), 'the next photo of the timeline');
      await page.keyboard.press('Escape');
      await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    });
  });

  describe('the relevance cut-off', () => {
    /** From the timeline's first photo, "Find similar": a search by a photo with two near-copies of it. */
    async function similarToFirst(): Promise<SearchResponse> {
      const id = (await timelineIds())[0]!;
      await page.click(`#timeline-list .card[data-id="${id}"]`);
      await page.waitForSelector('#viewer[open]');
      const answered = page.waitForResponse((r) => isPath(r, `/api/images/${id}/similar`));
      await page.click('#viewer-similar');
      const body = (await (await answered).json()) as SearchResponse;
      await page.waitForSelector('#results:not([aria-busy]) .card', { state: 'attached' });
      return body;
    }

    it('shows the strong matches with a count, widens to the weaker ones below a divider, and narrows again', async () => {
      const answer = await similarToFirst();
      const strong = answer.results.filter((r) => r.strong).map((r) => r.id);
      const weaker = answer.results.length - strong.length;
      expect(strong.length).toBe(answer.cutoff.strongCount);
      expect(strong.length).toBeGreaterThanOrEqual(2);
      expect(weaker).toBeGreaterThan(0);
      // Narrow first: the strong ones only, and the timeline gone.
      expect(await visibleResultIds()).toEqual(strong);
      expect(await page.isHidden('#timeline')).toBe(true);
      const more = answer.hasMore ? '+' : '';
      const summary = await page.textContent('#search-summary');
      expect(summary).toMatch(new RegExp(`^${strong.length} good matches for `));
      expect(summary).toContain(`· show ${weaker}${more} weaker ·`);
      await page.screenshot({ path: join(ARTIFACTS, 'cutoff-01-narrow.png') });

      await page.click('#search-summary .cutoff-toggle');
      expect(await visibleResultIds()).toEqual(answer.results.map((r) => r.id));
      expect(await page.getAttribute('#search-summary .cutoff-toggle', 'aria-expanded')).toBe('true');
      expect(await page.textContent('#search-summary .cutoff-toggle')).toBe(`hide ${weaker}${more} weaker`);
      // The divider sits where the strong matches end.
      const order = await page.$$eval('#results > li', (lis) => lis.map((li) => ((li as Browserish).classList.contains('cutoff-divider') ? 'divider' : (li as Browserish).classList.contains('weaker') ? 'weaker' : 'strong')));
      expect(order).toEqual([...strong.map(() => 'strong'), 'divider', ...Array(weaker).fill('weaker')]);
      expect(await page.isVisible('#results .cutoff-divider')).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'cutoff-02-wide.png') });

      await page.click('#search-summary .cutoff-toggle');
      expect(await visibleResultIds()).toEqual(strong);
      expect(await page.isHidden('#results .cutoff-divider')).toBe(true);
      expect(await page.getAttribute('#search-summary .cutoff-toggle', 'aria-expanded')).toBe('false');
    });

    it('the viewer browses what is shown: the strong matches only until widened', async () => {
      const answer = await similarToFirst();
      const strong = answer.results.filter((r) => r.strong);
      await page.click(`#results .card[data-id="${strong.at(-1)!.id}"]`);
      await page.waitForSelector('#viewer[open]');
      expect(await page.isDisabled('#viewer-next')).toBe(true);
      await page.keyboard.press('Escape');
      await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
      await page.click('#search-summary .cutoff-toggle');
      await page.click(`#results .card[data-id="${strong.at(-1)!.id}"]`);
      await page.waitForSelector('#viewer[open]');
      expect(await page.isEnabled('#viewer-next')).toBe(true);
      expect(await page.textContent('#viewer-meta')).toContain('Score');
      await page.keyboard.press('ArrowRight');
      await eventually(async () => (await page.textContent('#viewer-meta'))?.includes('weaker match'), 'the first weaker match in the viewer');
      await page.keyboard.press('Escape');
    });

    it('clearing the search box brings the timeline back', async () => {
      await similarToFirst();
      await page.click('#query-chips .chip-remove');
      await page.waitForSelector('#timeline:not([hidden]) #timeline-list .card');
      expect(await page.$$eval('#results .card', (c) => c.length)).toBe(0);
    });
  });

  it('threw no errors and got no error answers', () => {
    expect(pageProblems).toEqual([]);
    expect(failedResponses).toEqual([]);
  });
});
