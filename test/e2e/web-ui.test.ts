/**
 * The web UI end to end, in real headless Chromium against the real `clipdex serve` (built CLI, self-built
 * tiny model, a watched fixture folder): what a user does, from the status bar to the viewer, uploads,
 * live updates, the problems page and folders, with screenshots in test-artifacts/e2e/.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
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

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${server.url}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  const cardIds = () => page.$$eval('#results .card', (cards) => cards.map((c) => Number((c as Browserish).dataset.id)));
  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
  const indexedShown = () => page.$eval('#status-text', (el) => Number((el as Browserish).dataset.indexed ?? -1));

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
  });

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('shows the indexed count in the status bar once the watched folder is indexed', async () => {
    const expected = photoFiles.length + 1; // the fixture photos and the hostile-named copy
    await eventually(async () => (await indexedShown()) >= expected, `the status bar to show ${expected} indexed photos\n${server.log()}`, 45_000);
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
    const searches: string[] = [];
    const onRequest = (r: { url(): string }) => {
      if (r.url().includes('/api/search')) searches.push(r.url());
    };
    page.on('request', onRequest);
    await page.click('#q');
    await page.keyboard.type('a photo of a fish', { delay: 15 });
    await page.waitForSelector('#results .card');
    await eventually(async () => (await page.getAttribute('#results', 'aria-busy')) === null, 'the search to settle');
    page.off('request', onRequest);
    // Typed faster than the debounce: one request, for the whole phrase.
    expect(searches).toHaveLength(1);
    expect(new URL(searches[0]!).searchParams.get('q')).toBe('a photo of a fish');

    const expected = await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent('a photo of a fish')}&limit=60`);
    expect(await cardIds()).toEqual(expected.results.map((r) => r.id));
    await eventually(() => page.$eval('#results .card img', (img) => (img as Browserish).complete && (img as Browserish).naturalWidth > 0), 'the first thumbnail');

    await page.hover('#results .card >> nth=0');
    const score = page.locator('#results .card >> nth=0').locator('.card-score');
    await eventually(async () => Number(await score.evaluate((el) => (globalThis as Browserish).getComputedStyle(el.parentElement).opacity)) === 1, 'the score overlay');
    expect(await score.textContent()).toContain(expected.results[0]!.score.toFixed(3));
    await shot('02-grid');
  });

  it('never shows an older answer over a newer one', async () => {
    // A phrase whose request is under way is replaced by another: only the newer one may fill the grid.
    await page.fill('#q', 'a hammer');
    await page.press('#q', 'Enter');
    await page.fill('#q', 'a wind turbine');
    await page.press('#q', 'Enter');
    await eventually(async () => (await page.getAttribute('#results', 'aria-busy')) === null, 'the search to settle');
    await page.waitForTimeout(300);
    const expected = await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent('a wind turbine')}&limit=60`);
    expect(await cardIds()).toEqual(expected.results.map((r) => r.id));
    expect(await page.textContent('#search-summary')).toContain('a wind turbine');
  });

  it('opens a photo in the viewer with its metadata, browses with the arrow keys, closes with Escape', async () => {
    const results = (await api<{ results: Result[] }>(`/api/search?q=${encodeURIComponent('a wind turbine')}&limit=60`)).results;
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

  it('subtracts the words after a minus: one weighted query', async () => {
    const posted = page.waitForRequest((r) => r.url().endsWith('/api/search') && r.method() === 'POST');
    await page.fill('#q', 'a photo -a fish -black-and-white');
    await page.press('#q', 'Enter');
    const body = (await posted).postDataJSON() as { terms: unknown[] };
    expect(body.terms).toEqual([
      { text: 'a photo', weight: 1 },
      { text: 'a fish', weight: -1 },
      { text: 'black-and-white', weight: -1 },
    ]);
    const res = await fetch(`${server.url}/api/search`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, limit: 60 }) });
    const expected = ((await res.json()) as { results: Result[] }).results.map((r) => r.id);
    await eventually(async () => JSON.stringify(await cardIds()) === JSON.stringify(expected), 'the grid of the weighted query');
  });

  it('renders a file name made of HTML as text, never as markup', async () => {
    await page.fill('#q', 'a photo');
    await page.press('#q', 'Enter');
    const card = page.locator('#results .card', { hasText: HOSTILE_NAME });
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
    const before = await indexedShown();
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
    await page.fill('#root-path', 'relative/folder');
    await page.click('#add-root button[type="submit"]');
    await page.waitForSelector('#root-error:not([hidden])');
    expect(await page.textContent('#root-error')).toContain('absolute');
  });

  it('looks right in dark mode and on a phone-sized screen', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.click('nav a[data-route="search"]');
    await page.fill('#q', 'a photo of a tool');
    await page.press('#q', 'Enter');
    await page.waitForSelector('#results .card');
    const background = await page.evaluate(() => { const w = globalThis as Browserish; return String(w.getComputedStyle(w.document.body).backgroundColor); });
    const [r, g, b] = background.match(/\d+/g)!.map(Number);
    expect(r! + g! + b!).toBeLessThan(120);
    await shot('09-dark');
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const columns = await page.$eval('#results', (el) => String((globalThis as Browserish).getComputedStyle(el).gridTemplateColumns).split(' ').length);
    expect(columns).toBeGreaterThanOrEqual(2);
    expect(columns).toBeLessThanOrEqual(3);
    await shot('10-phone-dark');
    await page.setViewportSize({ width: 1280, height: 820 });
    await page.emulateMedia({ colorScheme: 'light' });
  });

  it('kept to its Content-Security-Policy, threw no errors, and got no error answers but the one it provoked', () => {
    expect(pageProblems).toEqual([]);
    // The relative folder path above is the only request the server refused.
    expect(failedResponses).toEqual(['POST /api/roots 400']);
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
