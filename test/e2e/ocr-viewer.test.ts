/**
 * The viewer shows the text read in a photo and marks the lines a search matched, in headless Chromium against
 * the real `clipdex serve` (built CLI, self-built tiny model) with CLIPDEX_OCR=on and the real PP-OCRv4 weights,
 * on words rendered into shared photos. Every wait is for a response or an element.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import type { BrowseResponse } from '../../src/search/query-engine.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from '../helpers/e2e-server.js';
import { CONDITIONS, makeOcrPhotos, type OcrPhoto } from '../helpers/ocr-photos.js';
import { NEEDS_SHARED, projectRoot, sharedPath } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');
// This project type-checks without the DOM library: code run in the page sees its objects untyped.
type Browserish = any;

const HAS_PHOTOS = sharedPath('photos', 'labeled') !== null;

describe.skipIf(!HAS_CHROMIUM || !HAS_PHOTOS)(`the viewer's text in photos ${HAS_CHROMIUM ? (HAS_PHOTOS ? '' : NEEDS_SHARED) : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  let photos: OcrPhoto[];
  const ids = new Map<string, number>();
  const problems: string[] = [];

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${server.url}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-ocr-'));
    const dir = join(tmp, 'photos');
    await mkdir(dir, { recursive: true });
    await mkdir(ARTIFACTS, { recursive: true });
    photos = await makeOcrPhotos(3, CONDITIONS.filter((c) => c.name === 'large-110px'));
    for (const p of photos) await writeFile(join(dir, `${p.name}.png`), p.png);
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 7 });
    server = await startServe(['--model', model.dir], ['--root', dir], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache'), CLIPDEX_OCR: 'on' });
    await eventually(async () => {
      const page = await api<BrowseResponse>('/api/images?limit=50');
      for (const p of page.images) ids.set(p.path, p.id);
      return page.images.length === photos.length;
    }, `the photos indexed\n${server.log()}`, 120_000);
    // Each photo's text read (new photos are read during ingest, from the same decode).
    await eventually(async () => {
      for (const id of ids.values()) if ((await api<{ status: string }>(`/api/images/${id}/text`)).status === 'pending') return false;
      return true;
    }, `the text read\n${server.log()}`, 180_000);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 820 }, colorScheme: 'light', locale: 'en-US' });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    watchPage(page, problems);
  }, 400_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('a search for a word shows the photo with it; the viewer lists the text and outlines the matched line over the photo', async () => {
    const bakery = photos.find((p) => p.truth === 'Bakery')!;
    const id = [...ids].find(([path]) => path.endsWith(`${bakery.name}.png`))![1];
    await page.goto(server.url);
    const answered = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/search');
    await page.fill('#q', 'bakery');
    await page.press('#q', 'Enter');
    await answered;
    await page.waitForSelector(`#results .card[data-id="${id}"]`);
    const text = page.waitForResponse((r) => new URL(r.url()).pathname === `/api/images/${id}/text`);
    await page.click(`#results .card[data-id="${id}"]`);
    await page.waitForSelector('#viewer[open]');
    await text;
    await page.waitForSelector('#viewer-text:not([hidden]) #viewer-text-lines li');
    expect(await page.$$eval('#viewer-text-lines li', (lis) => lis.map((li) => (li as Browserish).textContent))).toContain('Bakery');
    expect(await page.$$eval('#viewer-text-lines li.matched', (lis) => lis.map((li) => (li as Browserish).textContent))).toEqual(['Bakery']);
    // The outline layer lies over the photo's drawn area, with the matched line's box inside it.
    await page.waitForSelector('#viewer-text-boxes polygon.matched', { state: 'attached' });
    const boxes = await page.$eval('#viewer-text-boxes', (svg) => {
      const layer = (svg as Browserish).getBoundingClientRect();
      const poly = (svg as Browserish).querySelector('polygon.matched').getBoundingClientRect();
      const img = (svg as Browserish).ownerDocument.getElementById('viewer-image').getBoundingClientRect();
      return { layer: [layer.left, layer.top, layer.width, layer.height], poly: [poly.left, poly.top, poly.width, poly.height], img: [img.left, img.top, img.width, img.height] };
    });
    const [lx, ly, lw, lh] = boxes.layer;
    const [px, py, pw, ph] = boxes.poly;
    const [ix, iy, iw, ih] = boxes.img;
    expect(lw).toBeGreaterThan(100);
    expect(lx).toBeGreaterThanOrEqual(ix - 1);
    expect(ly).toBeGreaterThanOrEqual(iy - 1);
    expect(lx + lw).toBeLessThanOrEqual(ix + iw + 1);
    expect(ly + lh).toBeLessThanOrEqual(iy + ih + 1);
    expect(pw).toBeGreaterThan(10);
    expect(px).toBeGreaterThanOrEqual(lx - 2);
    expect(py).toBeGreaterThanOrEqual(ly - 2);
    expect(px + pw).toBeLessThanOrEqual(lx + lw + 2);
    expect(py + ph).toBeLessThanOrEqual(ly + lh + 2);
    // Marked for the eye too: the matched line's background and the box's outline are the highlight colour.
    const look = await page.evaluate(() => {
      const d = (globalThis as Browserish).document;
      const style = (el: Browserish) => (globalThis as Browserish).getComputedStyle(el);
      return { li: style(d.querySelector('#viewer-text-lines li.matched')).backgroundColor, box: style(d.querySelector('#viewer-text-boxes polygon.matched')).stroke };
    });
    console.log(JSON.stringify(look));
    expect(look.li).toMatch(/rgba\(255, 200, 0/);
    expect(look.box).toBe('rgb(255, 200, 0)');
    await page.screenshot({ path: join(ARTIFACTS, 'ocr-viewer.png') });
    expect(problems).toEqual([]);
  });

  it('the Folders page shows how far the text is read; its switch, refused while CLIPDEX_OCR decides, says why', async () => {
    // A fresh load: only the hash would change, and the viewer left open by the test before stays over the page.
    await page.goto('about:blank');
    await page.goto(`${server.url}/#/folders`);
    await page.waitForSelector('#ocr-panel:not([hidden])');
    await page.waitForFunction((n) => (globalThis as Browserish).document.getElementById('ocr-state').textContent.startsWith(`${n} read`), photos.length);
    expect(await page.textContent('#ocr-state')).toMatch(/CLIPDEX_OCR=on/);
    expect(await page.isChecked('#ocr-enabled')).toBe(true);
    const [refused] = await Promise.all([page.waitForResponse((r) => new URL(r.url()).pathname === '/api/ocr' && r.request().method() === 'PUT'), page.click('#ocr-enabled')]);
    expect(refused.status()).toBe(409);
    await page.waitForSelector('#ocr-error:not([hidden])');
    expect(await page.textContent('#ocr-error')).toMatch(/CLIPDEX_OCR=on/);
    // Still on, as the server says.
    expect(await page.isChecked('#ocr-enabled')).toBe(true);
    expect((await api<{ ingest: { ocr: { enabled: boolean; source: string } } }>('/api/status')).ingest.ocr).toMatchObject({ enabled: true, source: 'env' });
    await page.screenshot({ path: join(ARTIFACTS, 'ocr-folders.png') });
    expect(problems).toEqual([]);
  });
});
