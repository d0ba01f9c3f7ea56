/**
 * The search box's syntax as the page shows it, in headless Chromium against the real `clipdex serve` (built
 * CLI, self-built tiny model) on a folder of photos with EXIF capture dates: what the server understood of
 * "dog in July 2023 -cat" appears as chips under the box (the date, the negation, the phrase), a chip's ✕
 * searches again without its words (filters kept), its words select themselves in the box to be edited,
 * "search literally" sends syntax=plain, a query with nothing special shows no chips, and a query made of
 * markup is text. Every wait is for a response or an element, never a fixed time.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { chromium, type Browser, type Page, type Response } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from '../helpers/e2e-server.js';
import { projectRoot } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');

// This project type-checks without the DOM library: code run in the page sees its objects untyped.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Browserish = any;

/** Photos and their EXIF DateTimeOriginal (the camera's wall clock), null for one without a date. */
const PHOTOS: [name: string, taken: string | null][] = [
  ['july-10.jpg', '2023:07:10 12:00:00'],
  ['july-25.jpg', '2023:07:25 12:00:00'],
  ['august-2.jpg', '2023:08:02 12:00:00'],
  ['may-2019.jpg', '2019:05:05 12:00:00'],
  ['march-2024.jpg', '2024:03:01 12:00:00'],
  ['undated.jpg', null],
];
const ALL = PHOTOS.map(([n]) => n).sort();

interface Result {
  id: number;
  path: string;
}
interface Answer {
  url: URL;
  understood: unknown[] | undefined;
  names: string[];
}
interface Chip {
  kind: string;
  words: string[];
  remove: string | null;
}

/** A picture of its own (colours and a block placed by `i`) with a capture date in its EXIF. */
async function datedJpeg(path: string, i: number, taken: string | null): Promise<void> {
  const bg = { r: (i * 67) % 256, g: (i * 131 + 40) % 256, b: (i * 29 + 90) % 256 };
  const img = sharp({ create: { width: 320, height: 240, channels: 3, background: bg } })
    .composite([{ input: { create: { width: 60 + i * 20, height: 80, channels: 3, background: { r: 255 - bg.r, g: 255 - bg.g, b: 255 - bg.b } } }, left: 20 + i * 30, top: 30 + i * 20 }])
    .jpeg({ quality: 90 });
  await (taken ? img.withExif({ IFD2: { DateTimeOriginal: taken } }) : img).toFile(path);
}

describe.skipIf(!HAS_CHROMIUM)(`query chips in headless Chromium ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let photos: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  const pageProblems: string[] = [];
  const failedResponses: string[] = [];

  const isSearch = (r: Response, q: string, plain = false) => {
    const u = new URL(r.url());
    return u.pathname === '/api/search' && r.request().method() === 'GET' && u.searchParams.get('q') === q && (u.searchParams.get('syntax') === 'plain') === plain;
  };

  /**
   * Does `action` (typing, a click), waits for the GET /api/search of `q` it causes and for the page to have
   * drawn that answer (the grid no longer busy), and returns the answer with the file names in the grid.
   */
  async function searched(q: string, action: () => Promise<unknown>, plain = false): Promise<Answer> {
    const answered = page.waitForResponse((r) => isSearch(r, q, plain));
    await action();
    const response = await answered;
    const body = (await response.json()) as { understood?: unknown[]; results: Result[] };
    // The page marks the grid busy when it asks and clears the mark once the answer is drawn.
    await page.waitForSelector('#results:not([aria-busy])', { state: 'attached' });
    const byId = new Map(body.results.map((r) => [r.id, basename(r.path)]));
    const ids = await page.$$eval('#results .card', (cards) => cards.map((c) => Number((c as Browserish).dataset.id)));
    expect(ids).toEqual(body.results.map((r) => r.id));
    return { url: new URL(response.url()), understood: body.understood, names: ids.map((id) => byId.get(id)!).sort() };
  }

  const typeAndSearch = (q: string) =>
    searched(q, async () => {
      await page.fill('#q', q);
      await page.press('#q', 'Enter');
    });

  const chips = (): Promise<Chip[]> =>
    page.$$eval('#query-chips .chip-query', (els) =>
      els.map((e) => {
        const el = e as Browserish;
        return {
          kind: el.dataset.kind,
          words: [...el.querySelectorAll('.chip-edit, .chip-value')].map((w: Browserish) => w.textContent),
          remove: el.querySelector('.chip-remove')?.getAttribute('aria-label') ?? null,
        };
      }),
    );
  const chip = (kind: string) => page.locator(`#query-chips .chip-query[data-kind="${kind}"]`);
  const selected = () => page.$eval('#q', (el) => {
    const input = el as Browserish;
    return { focused: (globalThis as Browserish).document.activeElement === input, text: input.value.slice(input.selectionStart, input.selectionEnd) };
  });

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-chips-'));
    photos = join(tmp, 'photos');
    await mkdir(photos, { recursive: true });
    for (const [i, [name, taken]] of PHOTOS.entries()) await datedJpeg(join(photos, name), i, taken);
    await mkdir(ARTIFACTS, { recursive: true });
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 7 });
    server = await startServe(['--model', model.dir], ['--root', photos], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    // A fixed language: the date chip is written in the browser's.
    const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, colorScheme: 'light', locale: 'en-US' });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    watchPage(page, pageProblems, { failedResponses });
    await page.goto(server.url);
    await eventually(async () => {
      const s = (await (await fetch(`${server.url}/api/status`)).json()) as { indexed: number; pending: number };
      return s.indexed >= PHOTOS.length && s.pending === 0;
    }, `the dated photos indexed\n${server.log()}`, 60_000);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  // Each test starts on a freshly loaded page: no upload, filter or literal switch left by the one before.
  beforeEach(async () => {
    await page.goto(server.url);
    await page.waitForSelector('#view-search:not([hidden])');
  });

  it('shows the date, the negation and the phrase of "dog in July 2023 -cat" as chips, and the date restricts the results', async () => {
    const answer = await typeAndSearch('dog in July 2023 -cat');
    expect(answer.understood).toEqual([
      { kind: 'phrase', text: 'dog' },
      { kind: 'not', text: 'cat' },
      { kind: 'date', text: 'in July 2023', from: '2023-07-01', to: '2023-08-01' },
    ]);
    expect(answer.names).toEqual(['july-10.jpg', 'july-25.jpg']);
    expect(await chips()).toEqual([
      // Without "dog" only a negation would be left, which is no search: the phrase has no ✕.
      { kind: 'phrase', words: ['dog'], remove: null },
      { kind: 'not', words: ['cat'], remove: 'Remove: not: cat' },
      { kind: 'date', words: ['Jul 2023'], remove: 'Remove: Taken Jul 2023' },
    ]);
    expect(await chip('date').textContent()).toContain('Taken');
    await page.screenshot({ path: join(ARTIFACTS, 'chips-01-understood.png') });
  });

  it('removing the date chip searches again without "in July 2023", the other parts kept', async () => {
    await typeAndSearch('dog in July 2023 -cat');
    const answer = await searched('dog -cat', () => chip('date').locator('.chip-remove').click());
    expect(answer.url.searchParams.get('q')).not.toContain('July 2023');
    expect(await page.inputValue('#q')).toBe('dog -cat');
    expect(answer.names).toEqual(ALL);
    expect((await chips()).map((c) => c.kind)).toEqual(['phrase', 'not']);
  });

  it('the ✕ is a button the keyboard reaches: Enter on it removes the negation', async () => {
    await typeAndSearch('dog -cat');
    const answer = await searched('dog', async () => {
      await chip('not').locator('.chip-remove').focus();
      await page.keyboard.press('Enter');
    });
    expect(answer.understood).toEqual([{ kind: 'phrase', text: 'dog' }]);
    expect(await page.inputValue('#q')).toBe('dog');
    // Nothing special is left: no chips at all.
    expect(await page.isHidden('#query-chips')).toBe(true);
  });

  it('keeps the filter panel’s dates when a chip is removed: the two ranges intersect, then the panel’s alone', async () => {
    await page.click('#filters-toggle');
    await page.fill('#filter-from', '2023-07-20');
    const narrowed = await typeAndSearch('photo in 2023');
    expect(narrowed.url.searchParams.get('after')).toBe('2023-07-20');
    expect(narrowed.names).toEqual(['august-2.jpg', 'july-25.jpg']);
    const widened = await searched('photo', () => chip('date').locator('.chip-remove').click());
    expect(widened.url.searchParams.get('after')).toBe('2023-07-20');
    expect(widened.names).toEqual(['august-2.jpg', 'july-25.jpg', 'march-2024.jpg']);
  });

  it('clicking a chip’s words selects them in the search box: typing replaces that part', async () => {
    await typeAndSearch('dog in July 2023 -cat');
    await chip('date').locator('.chip-edit').click();
    expect(await selected()).toEqual({ focused: true, text: 'in July 2023' });
    const answer = await searched('dog in 2019 -cat', async () => {
      await page.keyboard.type('in 2019');
      await page.keyboard.press('Enter');
    });
    expect(answer.names).toEqual(['may-2019.jpg']);
    expect((await chips()).find((c) => c.kind === 'date')?.words).toEqual(['2019']);

    await chip('not').locator('.chip-edit').click();
    expect(await selected()).toEqual({ focused: true, text: '-cat' });
    await chip('phrase').locator('.chip-edit').click();
    expect(await selected()).toEqual({ focused: true, text: 'dog' });
  });

  it('shows alternatives as one chip, each alternative editable on its own', async () => {
    const answer = await typeAndSearch('cat | dog in 2023');
    expect(answer.understood).toEqual([
      { kind: 'or', phrases: ['cat', 'dog'] },
      { kind: 'date', text: 'in 2023', from: '2023-01-01', to: '2024-01-01' },
    ]);
    expect(answer.names).toEqual(['august-2.jpg', 'july-10.jpg', 'july-25.jpg']);
    expect(await chips()).toEqual([
      { kind: 'or', words: ['cat', 'dog'], remove: 'Remove: any of: cat · dog' },
      { kind: 'date', words: ['2023'], remove: 'Remove: Taken 2023' },
    ]);
    await chip('or').locator('.chip-edit', { hasText: 'dog' }).click();
    expect(await selected()).toEqual({ focused: true, text: 'dog' });
    // Without the alternatives the date alone is searched (its own words stand in for the phrase).
    const dateOnly = await searched('in 2023', () => chip('or').locator('.chip-remove').click());
    expect(dateOnly.names).toEqual(['august-2.jpg', 'july-10.jpg', 'july-25.jpg']);
    expect((await chips()).map((c) => c.kind)).toEqual(['date']);
  });

  it('beside an uploaded photo the words travel as q of the POST: the date chip restricts, its ✕ keeps the photo', async () => {
    /**
     * The POST /api/search the action causes (multipart: the upload beside the JSON query) and its photos.
     * Its answer holds `understood` exactly when typed text went with it as q.
     */
    const posted = async (action: () => Promise<unknown>, withText: boolean): Promise<string[]> => {
      const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/search' && r.request().method() === 'POST');
      await action();
      const body = (await (await answered).json()) as { understood?: unknown; results: Result[] };
      expect(body.understood !== undefined).toBe(withText);
      await page.waitForSelector('#results:not([aria-busy])', { state: 'attached' });
      return body.results.map((r) => basename(r.path)).sort();
    };
    const all = await posted(() => page.setInputFiles('#upload-input', join(photos, 'july-10.jpg')), false);
    expect(all).toEqual(ALL);
    const july = await posted(async () => {
      await page.fill('#q', 'in July 2023');
      await page.press('#q', 'Enter');
    }, true);
    expect(july).toEqual(['july-10.jpg', 'july-25.jpg']);
    // The upload's chip, then the date: a date alone stands in as the phrase, so no phrase chip.
    expect(await page.textContent('#query-chips .chip:not(.chip-query) .chip-label')).toBe('Like july-10.jpg');
    expect(await chips()).toEqual([{ kind: 'date', words: ['Jul 2023'], remove: 'Remove: Taken Jul 2023' }]);
    expect(await posted(() => chip('date').locator('.chip-remove').click(), false)).toEqual(ALL);
    expect(await page.inputValue('#q')).toBe('');
    expect(await page.textContent('#query-chips .chip-label')).toBe('Like july-10.jpg');
    await page.click('#query-chips .chip-remove');
    await page.waitForSelector('#query-chips', { state: 'hidden' });
  });

  it('"search literally" sends syntax=plain: no date read, every photo ranked; pressed again, the syntax is back', async () => {
    await typeAndSearch('dog in July 2023 -cat');
    const literal = await searched('dog in July 2023 -cat', () => page.click('#query-chips .chip-literal'), true);
    expect(literal.understood).toEqual([{ kind: 'phrase', text: 'dog in July 2023 -cat' }]);
    expect(literal.names).toEqual(ALL);
    expect(await chips()).toEqual([]);
    expect(await page.getAttribute('#query-chips .chip-literal', 'aria-pressed')).toBe('true');
    const again = await searched('dog in July 2023 -cat', () => page.click('#query-chips .chip-literal'));
    expect(again.names).toEqual(['july-10.jpg', 'july-25.jpg']);
    expect((await chips()).map((c) => c.kind)).toEqual(['phrase', 'not', 'date']);
    expect(await page.getAttribute('#query-chips .chip-literal', 'aria-pressed')).toBe('false');
  });

  it('a query read as nothing special shows no chips: "the 1975 band" is no date', async () => {
    // First a query with a date, so the chips are there to go away.
    await typeAndSearch('band in 2019');
    expect((await chips()).map((c) => c.kind)).toEqual(['phrase', 'date']);
    const answer = await typeAndSearch('the 1975 band');
    expect(answer.understood).toEqual([{ kind: 'phrase', text: 'the 1975 band' }]);
    expect(answer.names).toEqual(ALL);
    expect(await page.isHidden('#query-chips')).toBe(true);
    expect(await page.$$('#query-chips .chip')).toHaveLength(0);
  });

  it('a query made of markup is shown as text in its chip, never run', async () => {
    const hostile = '<img src=x onerror=alert(1)> 2019';
    const answer = await typeAndSearch(hostile);
    expect(answer.names).toEqual(['may-2019.jpg']);
    expect(await chips()).toEqual([
      { kind: 'phrase', words: ['<img src=x onerror=alert(1)>'], remove: 'Remove: <img src=x onerror=alert(1)>' },
      { kind: 'date', words: ['2019'], remove: 'Remove: Taken 2019' },
    ]);
    expect(await page.$$('#query-chips img, #query-chips [onerror]')).toHaveLength(0);
    await page.screenshot({ path: join(ARTIFACTS, 'chips-02-hostile.png') });
  });

  it('the page reported no script errors, CSP violations, dialogs or failed requests', () => {
    expect(pageProblems).toEqual([]);
    expect(failedResponses).toEqual([]);
  });
});
