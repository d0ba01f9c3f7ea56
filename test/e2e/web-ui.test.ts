/**
 * The web UI end to end, in real headless Chromium against the real `clipdex serve` (built CLI, self-built
 * tiny model, a watched fixture folder): what a user does, from the status bar to the viewer, uploads,
 * live updates, the problems page and folders, with screenshots in test-artifacts/e2e/.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, writeCorruptPhoto, writePhotoFixture, watchPage, type ServeProcess } from '../helpers/e2e-server.js';
import { projectRoot } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');
/** A file name a careless page would turn into markup and run. */
const HOSTILE_NAME = '<img src=x onerror=alert(1)>.jpg';

/**
 * Code passed to page.evaluate runs in the browser; this project type-checks without the DOM library, so
 * those few lines see the page's objects untyped.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Browserish = any;

interface Result {
  id: number;
  path: string;
  score: number;
  format: string | null;
}

describe.skipIf(!HAS_CHROMIUM)(`web UI in headless Chromium ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let photos: string;
  let spare: string;
  let photoFiles: string[];
  let server: ServeProcess;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  /** Problems the page reported itself: CSP violations, script errors, alert() calls. */
  const pageProblems: string[] = [];
  const failedResponses: string[] = [];
  /** Error answers a test provoked on purpose, noted by that test: the last check needs no other test's. */
  const provoked: string[] = [];

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${server.url}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  const cardIds = () => page.$$eval('#results .card', (cards) => cards.map((c) => Number((c as Browserish).dataset.id)));
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  const indexedShown = () => page.$eval('#status-text', (el) => Number((el as Browserish).dataset.indexed ?? -1));
  const settled = () => eventually(async () => (await page.getAttribute('#results', 'aria-busy')) === null, 'the search to settle');
  /** The phrase of a GET /api/search, or null for any other request. */
  const searchedPhrase = (url: string) => {
    const u = new URL(url);
    return u.pathname === '/api/search' ? u.searchParams.get('q') : null;
  };

  /**
   * The search page as a test starts it, whatever the tests before it left: viewer closed, no photo or
   * upload in the query, no filters, nothing selected, no search under way.
   */
  async function freshSearchPage(): Promise<void> {
    if (await page.$('#viewer[open]')) {
      await page.keyboard.press('Escape');
      await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    }
    await page.click('nav a[data-route="search"]');
    await page.waitForSelector('#view-search:not([hidden])');
    while (await page.$('#query-chips .chip-remove')) await page.click('#query-chips .chip-remove >> nth=0');
    if (await page.isVisible('#filters-count')) {
      if (await page.isHidden('#filters')) await page.click('#filters-toggle');
      await page.click('#filters-reset');
      await eventually(() => page.isHidden('#filters-count'), 'filters cleared');
    }
    if (await page.isVisible('#filters')) await page.click('#filters-toggle');
    if (await page.isVisible('#label-bar')) await page.click('#select-clear');
    await settled();
  }

  /**
   * Shows the weaker matches too: a random model's scores decide which results are strong, and the tests
   * below click photos wherever they rank. (test/e2e/timeline.test.ts tests the cut-off itself.)
   */
  async function widen(): Promise<void> {
    if (await page.isVisible('#search-summary .cutoff-toggle[aria-expanded="false"]')) await page.click('#search-summary .cutoff-toggle');
  }

  /** Searches for a phrase from the box and waits for the grid of its answer; returns that answer. */
  async function searchFor(phrase: string): Promise<Result[]> {
    const answered = page.waitForResponse((r) => searchedPhrase(r.url()) === phrase);
    await page.fill('#q', phrase);
    await page.press('#q', 'Enter');
    await answered;
    const { results } = await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent(phrase)}&limit=60`);
    await eventually(async () => JSON.stringify(await cardIds()) === JSON.stringify(results.map((r) => r.id)), `the grid for “${phrase}”`);
    await settled();
    await widen();
    return results;
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-'));
    photos = join(tmp, 'photos');
    const fixture = await writePhotoFixture(photos, join(tmp, 'spare'));
    photoFiles = fixture.files;
    spare = fixture.spare;
    // A real photo under a name made of markup, and a file that only pretends to be a JPEG.
    await copyFile(photoFiles[1]!, join(photos, HOSTILE_NAME));
    await writeCorruptPhoto(join(photos, 'broken.jpg'));
    await mkdir(ARTIFACTS, { recursive: true });
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 7 });
    server = await startServe(['--model', model.dir], ['--root', photos], {
      CLIPDEX_DATA_DIR: join(tmp, 'data'),
      CLIPDEX_CACHE_DIR: join(tmp, 'cache'),
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: { width: 1280, height: 820 }, colorScheme: 'light' });
    page = await context.newPage();
    // Fail in seconds, not the default 30 s, so a broken step leaves time for the rest of the suite.
    page.setDefaultTimeout(15_000);
    // confirm() is how a folder is removed; alert() would mean a file name ran as script.
    watchPage(page, pageProblems, { failedResponses });
    await page.goto(server.url);
    // Every test may rely on the whole folder being indexed, not only the one that watches the status bar.
    const expected = photoFiles.length + 1; // the fixture photos and the hostile-named copy
    await eventually(async () => {
      const s = await api<{ indexed: number; failed: number; pending: number }>('/api/status');
      return s.indexed >= expected && s.failed === 1 && s.pending === 0;
    }, `the fixture folder indexed\n${server.log()}`, 60_000);
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('shows the indexed count in the status bar once the watched folder is indexed', async () => {
    // The fixture photos and the hostile-named copy (and the spare, once the live-update test added it).
    const expected = (await api<{ indexed: number }>('/api/status')).indexed;
    expect(expected).toBeGreaterThanOrEqual(photoFiles.length + 1);
    await eventually(async () => (await indexedShown()) === expected, `the status bar to show ${expected} indexed photos\n${server.log()}`, 45_000);
    // Once the engine is idle the bar says so in words, not just in its data attribute.
    await eventually(async () => (await page.textContent('#status-text'))?.startsWith(`${expected} photos indexed`), 'the idle status text');
    await eventually(async () => (await page.isVisible('#status-failed')) && (await page.textContent('#status-failed')), 'the failed count');
    expect(await page.textContent('#status-failed')).toBe('1 failed');
    // The broken photo's failure travels on the stream too; the page must not take it for a dropped
    // connection (it once did, when the event was named `error`, and stayed "reconnecting" for good).
    await eventually(async () => (await page.getAttribute('#status-connection', 'data-state')) === 'live', 'the live event stream');
    await shot('01-start');
  });

  it('searches while typing: one request after the pause, the grid of the last phrase, scores on hover', async () => {
    await freshSearchPage();
    await page.fill('#q', '');
    const phrase = 'a photo of a fish';
    const searches: string[] = [];
    const onRequest = (r: { url(): string }) => {
      const q = searchedPhrase(r.url());
      if (q !== null) searches.push(q);
    };
    page.on('request', onRequest);
    try {
      // Keystrokes faster than the debounce, for certain: all of them inside one task of the page, where no
      // timer can run between two. (Keys sent one by one may be further apart than the pause on a loaded
      // machine, and then a search for the words so far is right.) One request, for the whole phrase.
      const answered = page.waitForResponse((r) => searchedPhrase(r.url()) === phrase);
      await page.$eval('#q', (el, text) => {
        const input = el as Browserish;
        for (let i = 1; i <= text.length; i++) {
          input.value = text.slice(0, i);
          input.dispatchEvent(new (globalThis as Browserish).Event('input', { bubbles: true }));
        }
      }, phrase);
      await answered;
      await settled();
      expect(searches).toEqual([phrase]);
    } finally {
      page.off('request', onRequest);
    }

    const expected = await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent(phrase)}&limit=60`);
    expect(await cardIds()).toEqual(expected.results.map((r) => r.id));
    await eventually(() => page.$eval('#results .card img', (img) => (img as Browserish).complete && (img as Browserish).naturalWidth > 0), 'the first thumbnail');

    await page.hover('#results .card >> nth=0');
    const score = page.locator('#results .card >> nth=0').locator('.card-score');
    await eventually(async () => Number(await score.evaluate((el) => (globalThis as Browserish).getComputedStyle(el.parentElement).opacity)) === 1, 'the score overlay');
    expect(await score.textContent()).toContain(expected.results[0]!.score.toFixed(3));
    await shot('02-grid');
  });

  it('typed key by key, whatever the pauses, ends on the grid of the whole phrase', async () => {
    await freshSearchPage();
    await page.fill('#q', '');
    const phrase = 'a wind turbine';
    const searches: string[] = [];
    const onRequest = (r: { url(): string }) => {
      const q = searchedPhrase(r.url());
      if (q !== null) searches.push(q);
    };
    page.on('request', onRequest);
    try {
      const answered = page.waitForResponse((r) => searchedPhrase(r.url()) === phrase);
      await page.click('#q');
      await page.keyboard.type(phrase, { delay: 15 });
      await answered;
    } finally {
      page.off('request', onRequest);
    }
    // A slow machine may search for the words so far between keys; never for anything else, and last for all of it.
    expect(searches.length).toBeGreaterThan(0);
    expect(searches.every((q) => phrase.startsWith(q))).toBe(true);
    expect(searches.at(-1)).toBe(phrase);
    const expected = await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent(phrase)}&limit=60`);
    await eventually(async () => JSON.stringify(await cardIds()) === JSON.stringify(expected.results.map((r) => r.id)), 'the grid of the whole phrase');
    expect(await page.textContent('#search-summary')).toContain(phrase);
  });

  it('never shows an older answer over a newer one', async () => {
    await freshSearchPage();
    // The older request's answer is held back until the newer one is on screen, then let go: only the
    // newer one may fill the grid.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const isHammer = (url: URL) => url.pathname === '/api/search' && url.searchParams.get('q') === 'a hammer';
    await page.route(isHammer, async (route) => {
      await held;
      await route.continue().catch(() => undefined); // the page may have aborted it already
    });
    try {
      const hammerEnded = new Promise<void>((resolve) => {
        const done = (r: { url(): string }) => {
          if (searchedPhrase(r.url()) === 'a hammer') resolve();
        };
        page.on('requestfinished', done);
        page.on('requestfailed', done);
      });
      const hammerSent = page.waitForRequest((r) => searchedPhrase(r.url()) === 'a hammer');
      await page.fill('#q', 'a hammer');
      await page.press('#q', 'Enter');
      await hammerSent;
      const turbine = await searchFor('a wind turbine');
      release();
      await hammerEnded;
      // Whatever the page does with the late answer happens within a frame or two of it.
      await page.evaluate(() => new Promise((resolve) => (globalThis as Browserish).requestAnimationFrame(() => (globalThis as Browserish).setTimeout(resolve, 0))));
      await settled();
      expect(await cardIds()).toEqual(turbine.map((r) => r.id));
      expect(await page.textContent('#search-summary')).toContain('a wind turbine');
    } finally {
      release();
      await page.unroute(isHammer);
    }
  });

  it('opens a photo in the viewer with its metadata, browses with the arrow keys, closes with Escape', async () => {
    await freshSearchPage();
    const results = await searchFor('a wind turbine');
    await page.click('#results .card >> nth=0');
    await page.waitForSelector('#viewer[open]');
    const first = results[0]!;
    expect(await page.textContent('#viewer-title')).toBe(basename(first.path));
    expect(await page.textContent('#viewer-meta dd[data-field="path"]')).toBe(first.path);
    const meta = await api<{ width: number; height: number; format: string }>(`/api/images/${first.id}`);
    expect(await page.textContent('#viewer-meta dd[data-field="dimensions"]')).toContain(`${meta.width.toLocaleString('en-US')} × ${meta.height.toLocaleString('en-US')}`);
    expect(await page.textContent('#viewer-meta dd[data-field="format"]')).toBe(meta.format.toUpperCase());
    // The original replaces the preview once loaded.
    await eventually(
      () => page.$eval('#viewer-image', (img) => (img as Browserish).src.endsWith('/file') && (img as Browserish).naturalWidth > 0),
      'the original in the viewer',
    );
    await shot('03-viewer');

    await page.keyboard.press('ArrowRight');
    expect(await page.textContent('#viewer-title')).toBe(basename(results[1]!.path));
    await page.keyboard.press('ArrowLeft');
    expect(await page.textContent('#viewer-title')).toBe(basename(first.path));
    await page.keyboard.press('Escape');
    await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    // Focus returns to the photo that was open.
    expect(await page.evaluate(() => (globalThis as Browserish).document.activeElement?.dataset.id)).toBe(String(first.id));
  });

  it('finds similar photos from the viewer', async () => {
    await freshSearchPage();
    await searchFor('a wind turbine');
    const target = (await cardIds())[2]!;
    await page.click(`#results .card[data-id="${target}"]`);
    await page.waitForSelector('#viewer[open]');
    await page.click('#viewer-similar');
    await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    await page.waitForSelector('#query-chips .chip');
    await eventually(async () => (await page.getAttribute('#results', 'aria-busy')) === null, 'the search to settle');
    const expected = await api<{ results: Result[] }>(`/api/images/${target}/similar?limit=60`);
    expect(await cardIds()).toEqual(expected.results.map((r) => r.id));
    expect(await cardIds()).not.toContain(target);
    expect(await page.inputValue('#q')).toBe('');
    await shot('04-similar');
  });

  it('searches by an uploaded image: picked with the file input, or dropped on the page', async () => {
    await freshSearchPage();
    await page.fill('#q', '');
    const all = (await api<{ results: Result[] }>('/api/search?q=photo&limit=500')).results;
    const picked = photoFiles[4]!;
    const pickedId = all.find((r) => r.path.endsWith(basename(picked)))!.id;
    await page.setInputFiles('#upload-input', picked);
    await eventually(async () => (await cardIds())[0] === pickedId, 'the uploaded photo itself to rank first');
    expect(await page.textContent('#query-chips')).toContain(`Like ${basename(picked)}`);
    await shot('05-upload');

    // Drop: a DataTransfer holding a file, dispatched as the browser would on a real drop.
    const dropped = photoFiles[7]!;
    const droppedId = all.find((r) => r.path.endsWith(basename(dropped)))!.id;
    const bytes = (await readFile(dropped)).toString('base64');
    const dataTransfer = await page.evaluateHandle(
      ({ b64, name }) => {
        const dt = new (globalThis as Browserish).DataTransfer();
        const raw = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        dt.items.add(new (globalThis as Browserish).File([raw], name, { type: name.endsWith('.jpg') ? 'image/jpeg' : 'image/webp' }));
        return dt;
      },
      { b64: bytes, name: basename(dropped) },
    );
    // Clear the earlier upload first, so the dropped image alone decides the ranking.
    await page.click('#query-chips .chip-remove');
    await page.dispatchEvent('body', 'dragenter', { dataTransfer });
    expect(await page.isVisible('#drop-overlay')).toBe(true);
    await page.dispatchEvent('body', 'drop', { dataTransfer });
    await eventually(async () => (await cardIds())[0] === droppedId, 'the dropped photo itself to rank first');
    expect(await page.isVisible('#drop-overlay')).toBe(false);
    await page.click('#query-chips .chip-remove');
  });

  it('narrows results with the format filter', async () => {
    await freshSearchPage();
    await page.fill('#q', 'a photo');
    await page.click('#filters-toggle');
    await page.check('#filter-formats input[value="jpeg"]');
    await eventually(async () => (await page.textContent('#filters-count')) === '1', 'the active filter count');
    await eventually(async () => (await page.getAttribute('#results', 'aria-busy')) === null, 'the search to settle');
    const expected = await api<{ results: Result[] }>('/api/search?q=a%20photo&format=jpeg&limit=60');
    expect(expected.results.every((r) => r.format === 'jpeg')).toBe(true);
    await eventually(async () => JSON.stringify(await cardIds()) === JSON.stringify(expected.results.map((r) => r.id)), 'the JPEG-only grid');
    await shot('06-filters');
    await page.click('#filters-reset');
    await eventually(async () => (await page.isHidden('#filters-count')), 'filters cleared');
    await page.click('#filters-toggle');
  });

  it('sends the typed text whole: the server reads -word and -"two words" and answers the grid', async () => {
    await freshSearchPage();
    const q = 'a photo -"a fish" -black-and-white';
    const answered = page.waitForResponse((r) => searchedPhrase(r.url()) === q);
    await page.fill('#q', q);
    await page.press('#q', 'Enter');
    const body = (await (await answered).json()) as { understood: unknown[]; results: Result[] };
    expect(body.understood).toEqual([
      { kind: 'phrase', text: 'a photo' },
      { kind: 'not', text: 'a fish' },
      { kind: 'not', text: 'black-and-white' },
    ]);
    const expected = (await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent(q)}&limit=60`)).results.map((r) => r.id);
    await eventually(async () => JSON.stringify(await cardIds()) === JSON.stringify(expected), 'the grid of the query with negations');
    // What was read is shown: the negations as chips (test/e2e/query-chips.test.ts covers them).
    expect(await page.$$eval('#query-chips .chip-query', (els) => els.map((e) => (e as Browserish).dataset.kind))).toEqual(['phrase', 'not', 'not']);
  });

  it('renders a file name made of HTML as text, never as markup', async () => {
    await freshSearchPage();
    await page.fill('#q', 'a photo');
    await page.press('#q', 'Enter');
    const card = page.locator('#results .card', { hasText: HOSTILE_NAME });
    await card.waitFor({ state: 'attached' });
    await settled();
    await widen();
    await card.waitFor();
    expect(await card.locator('.card-name').textContent()).toBe(HOSTILE_NAME);
    await card.click();
    await page.waitForSelector('#viewer[open]');
    expect(await page.textContent('#viewer-title')).toBe(HOSTILE_NAME);
    // No element came out of the name: no <img src="x">, nothing with an onerror attribute.
    expect(await page.$$eval('img', (imgs) => imgs.filter((i) => i.getAttribute('src') === 'x' || i.hasAttribute('onerror')).length)).toBe(0);
    await page.keyboard.press('Escape');
    expect(pageProblems.filter((p) => p.startsWith('alert'))).toEqual([]);
  });

  it('updates the status bar live when a photo is added to the watched folder', async () => {
    await freshSearchPage();
    // Results on screen, for the offer to update them; every photo is in them (the library is small).
    const before = (await searchFor('a photo')).length;
    await eventually(async () => (await indexedShown()) === before, 'the status bar to count every photo');
    await page.evaluate(() => ((globalThis as Browserish).stayed = true));
    await copyFile(spare, join(photos, basename(spare)));
    await eventually(async () => (await indexedShown()) === before + 1, `the status bar to count the new photo\n${server.log()}`, 30_000);
    // Live over the event stream, not by a reload.
    expect(await page.evaluate(() => (globalThis as Browserish).stayed)).toBe(true);
    // The results on screen are not reshuffled; the page offers to update them instead.
    await eventually(() => page.isVisible('#new-photos'), 'the offer to update results');
    expect(await page.textContent('#new-photos')).toMatch(/^1 new photo indexed/);
    await page.click('#new-photos');
    await eventually(async () => (await page.$$('#results .card')).length === before + 1, 'the new photo in the results');
  });

  it('lists the file that failed, with its reason, on the problems page', async () => {
    const { errors } = await api<{ errors: { path: string; code: string; message: string }[] }>('/api/errors');
    const broken = errors.find((e) => e.path.endsWith('broken.jpg'));
    expect(broken).toBeDefined();
    await page.click('nav a[data-route="problems"]');
    const row = page.locator('#problems-body tr', { hasText: 'broken.jpg' });
    await row.waitFor();
    expect(await row.locator('.tag').textContent()).toBe(broken!.code);
    expect(await row.locator('.problem-message').textContent()).toBe(broken!.message);
    expect(await page.textContent('#problems-count')).toBe('1');
    await shot('07-problems');
  });

  it('lists, adds and removes watched folders', async () => {
    await page.click('nav a[data-route="folders"]');
    await page.locator('#roots-list .root-path', { hasText: photos }).waitFor();
    const extra = join(tmp, 'more-photos');
    await mkdir(extra);
    await page.fill('#root-path', extra);
    await page.click('#add-root button[type="submit"]');
    await page.locator('#roots-list .root-path', { hasText: extra }).waitFor();
    await shot('08-folders');
    await page.click(`#roots-list button[aria-label="Remove folder ${extra}"]`);
    await eventually(async () => !(await page.locator('#roots-list .root-path', { hasText: extra }).count()), 'the folder to leave the list');
    expect(await page.locator('#roots-list .root-path', { hasText: photos }).count()).toBe(1);
    // A relative path is refused with the server's reason, shown beside the form.
    provoked.push('POST /api/roots 400');
    await page.fill('#root-path', 'relative/folder');
    await page.click('#add-root button[type="submit"]');
    await page.waitForSelector('#root-error:not([hidden])');
    expect(await page.textContent('#root-error')).toContain('absolute');
  });

  it('says so in words when the folder to add does not exist, or is a file', async () => {
    await page.click('nav a[data-route="folders"]');
    await page.waitForSelector('#view-folders:not([hidden])');
    const missing = join(tmp, 'no-such-folder');
    provoked.push('POST /api/roots 404');
    const refused = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/roots' && r.request().method() === 'POST');
    await page.fill('#root-path', missing);
    await page.click('#add-root button[type="submit"]');
    const res = await refused;
    expect(res.status()).toBe(404);
    expect(await res.json()).toEqual({ error: { code: 'FOLDER_NOT_FOUND', message: `No folder at ${missing}`, details: { path: missing } } });
    await eventually(async () => (await page.textContent('#root-error')) === `No folder at ${missing}`, 'the missing-folder message');
    expect(await page.isVisible('#root-error')).toBe(true);
    expect(await page.locator('#roots-list .root-path', { hasText: missing }).count()).toBe(0);

    const file = photoFiles[0]!;
    provoked.push('POST /api/roots 400');
    const refusedFile = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/roots' && r.request().method() === 'POST');
    await page.fill('#root-path', file);
    await page.click('#add-root button[type="submit"]');
    expect((await refusedFile).status()).toBe(400);
    await eventually(async () => (await page.textContent('#root-error')) === `${file} is a file, not a folder`, 'the not-a-folder message');
    expect(await page.textContent('#root-error')).not.toMatch(/ENOENT|ENOTDIR|stat/);
    await shot('08b-folder-missing');
  });

  it('looks right in dark mode and on a phone-sized screen', async () => {
    await freshSearchPage();
    await page.emulateMedia({ colorScheme: 'dark' });
    try {
      await searchFor('a photo of a tool');
      const background = await page.evaluate(() => { const w = globalThis as Browserish; return String(w.getComputedStyle(w.document.body).backgroundColor); });
      const [r, g, b] = background.match(/\d+/g)!.map(Number);
      expect(r! + g! + b!).toBeLessThan(120);
      await shot('09-dark');
      const columns = () => page.$eval('#results', (el) => String((globalThis as Browserish).getComputedStyle(el).gridTemplateColumns).split(' ').length);
      const wide = await columns();
      await page.setViewportSize({ width: 390, height: 844 });
      // The grid reflows for the narrow screen: wait for that, then check how.
      await eventually(async () => (await columns()) < wide, 'the grid to reflow');
      expect(await columns()).toBeGreaterThanOrEqual(2);
      expect(await columns()).toBeLessThanOrEqual(3);
      await shot('10-phone-dark');
    } finally {
      await page.setViewportSize({ width: 1280, height: 820 });
      await page.emulateMedia({ colorScheme: 'light' });
    }
  });

  it('lets go of the selection once labeled, and shows the selected photos of earlier searches in a tray', async () => {
    await freshSearchPage();
    const trayIds = () => page.$$eval('#selection-tray .tray-item', (items) => items.map((i) => Number((i as Browserish).dataset.id)));
    const selectedTiles = () => page.$$eval('#results .tile.selected', (tiles) => tiles.map((t) => Number((t as Browserish).dataset.id)));
    const fish = await searchFor('a photo of a fish');
    const [a, b] = [fish[0]!.id, fish[1]!.id];
    await page.click(`#results .card[data-id="${a}"]`, { modifiers: ['Control'] });
    await page.click(`#results .card[data-id="${b}"]`, { modifiers: ['Control'] });
    expect(await page.textContent('#selection-count')).toBe('2 photos selected');
    expect(await trayIds()).toEqual([a, b]);
    expect(await page.textContent('#selection-elsewhere')).toBe('');

    // Another search, one that leaves a selected photo out (photos like `a` are every photo but `a`):
    // the selection stays, in the tray, and the bar says one of them is not on screen.
    await page.click(`#results .card[data-id="${a}"]`);
    await page.waitForSelector('#viewer[open]');
    const similar = page.waitForResponse((r) => new URL(r.url()).pathname === `/api/images/${a}/similar`);
    await page.click('#viewer-similar');
    await similar;
    await eventually(async () => !(await cardIds()).includes(a) && (await cardIds()).includes(b), 'the photos like the first one');
    await settled();
    await widen();
    expect(await page.textContent('#selection-count')).toBe('2 photos selected');
    expect(await trayIds()).toEqual([a, b]);
    expect(await page.textContent('#selection-elsewhere')).toBe('1 of them not in these results');
    expect(await selectedTiles()).toEqual([b]);
    await shot('12-selection-tray');

    // The tray's ✕ lets go of one photo; the card on screen follows.
    await page.click(`#selection-tray .tray-item[data-id="${b}"] .tray-remove`);
    expect(await trayIds()).toEqual([a]);
    expect(await selectedTiles()).toEqual([]);
    await page.click(`#results .card[data-id="${b}"]`, { modifiers: ['Control'] });
    expect(await trayIds()).toEqual([a, b]);

    const first = `tray caption ${Date.now()}`;
    await page.fill('#label-caption', first);
    await page.click('#label-submit');
    await eventually(async () => (await page.textContent('#label-message')) === `Labeled 2 photos “${first}”.`, 'the first confirmation');
    // Labeled, then let go: nothing is selected any more, on screen or off it.
    await eventually(() => page.isHidden('#label-bar'), 'the label bar to go with the selection');
    expect(await trayIds()).toEqual([]);
    expect(await selectedTiles()).toEqual([]);
    expect(await page.isVisible('#label-message')).toBe(true);

    // The next caption goes to the one photo picked for it, not to the earlier ones as well.
    const c = (await cardIds()).find((id) => id !== a && id !== b)!;
    await page.click(`#results .card[data-id="${c}"]`, { modifiers: ['Control'] });
    expect(await page.textContent('#selection-count')).toBe('1 photo selected');
    const second = `${first} (second)`;
    await page.fill('#label-caption', second);
    await page.click('#label-submit');
    await eventually(async () => (await page.textContent('#label-message'))?.includes(second), 'the second confirmation');
    expect(await page.textContent('#label-message')).toBe(`Labeled 1 photo “${second}”.`);
    const labeled = async (caption: string) =>
      (await api<{ labels: { imageId: number }[] }>(`/api/labels?limit=100&caption=${encodeURIComponent(caption)}`)).labels.map((l) => l.imageId).sort((x, y) => x - y);
    expect(await labeled(first)).toEqual([a, b].sort((x, y) => x - y));
    expect(await labeled(second)).toEqual([c]);
  });

  it('says, before any training, how many labels the first run will hold out (not "0 held out")', async () => {
    // Labels of its own, over the API: four photos under two captions at least, as training needs.
    const photos = (await api<{ results: Result[] }>('/api/search?q=photo&limit=60')).results.map((r) => r.id);
    const tag = `split ${Date.now()}`;
    for (const [i, caption] of [`${tag} one`, `${tag} two`].entries()) {
      const res = await fetch(`${server.url}/api/labels`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ imageIds: photos.slice(i * 4, i * 4 + 4), caption }),
      });
      expect(res.status).toBe(201);
    }
    const labels = await api<{ counts: { train: number; val: number }; captions: unknown[] }>('/api/labels?limit=1');
    expect(labels.counts.val).toBe(0); // never trained: every stored label still reads "train"
    const preview = await api<{ selection: string; testFraction: number; train: { labels: number }; val: { labels: number }; test: { labels: number } }>('/api/training/split');
    // Eight labels are few: the choices are made by cross-validation, and a fifth is held out as test photos.
    expect(preview.selection).toBe('cross-validation');
    expect(preview.testFraction).toBe(0.2);
    const heldOut = preview.val.labels + preview.test.labels;
    expect(heldOut).toBeGreaterThan(0);
    expect(preview.train.labels + heldOut).toBe(labels.counts.train);

    await page.click('nav a[data-route="labels"]');
    await page.waitForSelector('#view-labels:not([hidden])');
    await eventually(async () => (await page.getAttribute('#labels-counts', 'data-split')) === 'preview', 'the split the first run will use');
    const total = labels.counts.train;
    const expected = `${total} labels · ${labels.captions.length} captions · ${preview.train.labels} for training, ${heldOut} to be held out to check it when you train (the default 20% share)`;
    // The view shown before (an earlier test's labels) stays on screen until its fresh counts arrive.
    await eventually(async () => (await page.textContent('#labels-counts')) === expected, `the counts of the ${total} labels`);
    expect(await page.textContent('#labels-counts')).toBe(expected);
    expect(await page.textContent('#labels-counts')).not.toContain(' 0 held out');
  });

  it('kept to its Content-Security-Policy, threw no errors, and got no error answers but those the tests provoked', () => {
    expect(pageProblems).toEqual([]);
    // Each provoked refusal was noted by the test that asked for it; nothing else may have failed.
    expect([...failedResponses].sort()).toEqual([...provoked].sort());
  });
});

describe.skipIf(!HAS_CHROMIUM)(`web UI without a model ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-nomodel-'));
    // A model id that is not in the (empty) cache: the server starts anyway and says what is missing.
    server = await startServe(['--model', 'clip-vit-b-32'], [], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache'), HF_HUB_OFFLINE: '1' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('shows a banner with what is missing and how to fix it', async () => {
    const status = (await (await fetch(`${server.url}/api/status`)).json()) as { model: { error: { message: string; fix: string } } };
    expect(status.model.error).not.toBeNull();
    const page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
    await page.goto(server.url);
    await page.waitForSelector('#model-banner:not([hidden])');
    expect(await page.textContent('#model-message')).toBe(status.model.error.message);
    // Backticked commands become <code>; the words stay the same.
    expect(await page.textContent('#model-fix')).toBe(status.model.error.fix.replaceAll('`', ''));
    expect(await page.$$eval('#model-fix code', (codes) => codes.length)).toBeGreaterThan(0);
    await page.fill('#q', 'a cat');
    await page.waitForSelector('#search-error:not([hidden])');
    await page.screenshot({ path: join(ARTIFACTS, '11-no-model.png') });
    await page.close();
  });
});

describe.skipIf(!HAS_CHROMIUM)(`web UI with a damaged image model ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-badimage-'));
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 5 });
    await truncate(join(model.dir, 'onnx', 'vision_model.onnx'), 4096);
    server = await startServe(['--model', model.dir], [], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('says so in the banner with the way back, while text search answers', async () => {
    type Tower = { state: string; error: { message: string; fix: string } };
    let tower: Tower | string = 'opening';
    await eventually(async () => {
      tower = ((await (await fetch(`${server.url}/api/status`)).json()) as { model: { imageTower: Tower | string } }).model.imageTower;
      return tower !== 'opening';
    }, `the image tower settled\n${server.log()}`);
    const failed = tower as unknown as Tower;
    expect(failed.state).toBe('failed');
    const page = await browser.newPage({ viewport: { width: 1280, height: 600 } });
    await page.goto(server.url);
    await page.waitForSelector('#model-banner:not([hidden])');
    expect(await page.textContent('#model-message')).toContain(failed.error.message);
    expect(await page.textContent('#model-message')).toContain('Text search works');
    expect(await page.textContent('#model-fix')).toBe(failed.error.fix.replaceAll('`', ''));
    const answered = page.waitForResponse((r) => r.url().includes('/api/search') && r.request().method() === 'GET');
    await page.fill('#q', 'a cat');
    expect((await answered).status()).toBe(200);
    await page.close();
  });
});
