/**
 * The duplicates review in headless Chromium against the real `clipdex serve` (built CLI, self-built tiny
 * model, its watcher running) on photos copied from ../shared/photos with copies made here: the groups with
 * the keeper's badge and reason, the threshold in words, hiding a photo (and Undo from the toast), moving one
 * to the trash folder (the file really moves, and comes back byte-identical with Put back). Every wait is for
 * a response or an element, never a fixed time.
 */
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page, type Response } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from '../helpers/e2e-server.js';
import { NEEDS_SHARED, projectRoot, sharedPath } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');
const labeled = sharedPath('photos', 'labeled');

describe.skipIf(!HAS_CHROMIUM || !labeled)(`duplicates review in headless Chromium ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM} ${labeled ? '' : NEEDS_SHARED}`, () => {
  let tmp: string;
  let photos: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  let total = 0;
  const pageProblems: string[] = [];
  const failedResponses: string[] = [];

  const isApi = (r: Response, method: string, path: string) => r.request().method() === method && new URL(r.url()).pathname === path;
  /** Does `action` and waits for the GET /api/duplicates it causes and for the page to have drawn it. */
  async function found(action: () => Promise<unknown>): Promise<{ groups: { keeperId: number; reason: string; photos: { id: number; path: string; keeper: boolean }[] }[] }> {
    const answered = page.waitForResponse((r) => isApi(r, 'GET', '/api/duplicates'));
    await action();
    const body = await (await answered).json();
    await page.waitForSelector('#dup-groups:not([aria-busy])', { state: 'attached' });
    return body;
  }
  const shownIds = () => page.$$eval('#dup-groups .dup-photo', (els) => els.map((e) => Number((e as unknown as { dataset: { id: string } }).dataset.id)));

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-dups-'));
    photos = join(tmp, 'photos');
    await mkdir(photos, { recursive: true });
    for (const folder of ['fishes', 'tools', 'renewable']) {
      const names = (await readdir(join(labeled!, folder))).filter((n) => n.endsWith('.webp')).sort().slice(0, 2);
      for (const n of names) await copyFile(join(labeled!, folder, n), join(photos, `${folder}-${n}`));
    }
    const first = join(photos, (await readdir(photos)).sort()[0]!);
    await copyFile(first, join(photos, 'copy-of-first.webp'));
    await sharp(first).resize({ width: 220 }).webp({ quality: 90 }).toFile(join(photos, 'first-small.webp'));
    await sharp(first).flatten({ background: '#ffffff' }).jpeg({ quality: 92 }).toFile(join(photos, 'first-resaved.jpg'));
    total = (await readdir(photos)).length;
    await mkdir(ARTIFACTS, { recursive: true });
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 7 });
    server = await startServe(['--model', model.dir], ['--root', photos], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light', locale: 'en-US' });
    page = await context.newPage();
    page.setDefaultTimeout(20_000);
    watchPage(page, pageProblems, { failedResponses });
    await eventually(async () => {
      const s = (await (await fetch(`${server.url}/api/status`)).json()) as { indexed: number; pending: number };
      return s.indexed >= total && s.pending === 0;
    }, `the photos indexed\n${server.log()}`, 90_000);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  // A fresh page each time (a query of its own: the same URL with only a hash would not reload it).
  let visit = 0;
  beforeEach(async () => {
    await found(() => page.goto(`${server.url}/?visit=${++visit}#/duplicates`));
    await page.waitForSelector('#view-duplicates:not([hidden])');
  });

  it('shows the groups with the keeper badged and its reason, and the threshold in words', async () => {
    const body = await found(() => page.click('#dup-refresh'));
    expect(body.groups.length).toBeGreaterThan(0);
    const group = body.groups.find((g) => g.photos.some((p) => p.path.endsWith('copy-of-first.webp')))!;
    expect(group.photos.map((p) => p.path.split('/').pop()).sort()).toEqual(expect.arrayContaining(['copy-of-first.webp', 'first-small.webp', 'first-resaved.jpg']));
    expect(await shownIds()).toEqual(body.groups.flatMap((g) => g.photos.map((p) => p.id)));
    const keeper = page.locator(`.dup-photo[data-id="${group.keeperId}"]`);
    expect(await keeper.locator('.dup-keep-badge').textContent()).toBe('Keep');
    expect(await page.locator(`.dup-group[data-group] .dup-reason`).first().textContent()).toContain(body.groups[0]!.reason);
    expect(await page.textContent('#dup-threshold-words')).toBe('0.010: same shot, re-saved or resized');
    // Moving the slider says what the new value means and looks again with it.
    const again = page.waitForResponse((r) => isApi(r, 'GET', '/api/duplicates') && new URL(r.url()).searchParams.get('threshold') === '0.05');
    await page.$eval('#dup-threshold', (el) => {
      const input = el as unknown as { value: string; dispatchEvent: (e: unknown) => void };
      input.value = '0.05';
      input.dispatchEvent(new (globalThis as unknown as { Event: new (t: string, o: object) => unknown }).Event('input', { bubbles: true }));
    });
    expect(await page.textContent('#dup-threshold-words')).toBe('0.050: also burst shots and close variants: check each group');
    expect((await again).status()).toBe(200);
    await page.screenshot({ path: join(ARTIFACTS, 'duplicates-01-groups.png'), fullPage: true });
  });

  it('hides a photo from search, counts it, and Undo in the toast shows it again', async () => {
    const body = await found(() => page.click('#dup-refresh'));
    const target = body.groups[0]!.photos.find((p) => !p.keeper)!;
    const hidden = page.waitForResponse((r) => isApi(r, 'POST', '/api/duplicates/hide'));
    await page.click(`.dup-photo[data-id="${target.id}"] .dup-hide`);
    expect(await (await hidden).json()).toMatchObject({ hidden: [target.id], hiddenCount: 1 });
    await page.waitForSelector(`.dup-photo[data-id="${target.id}"]`, { state: 'detached' });
    await page.waitForSelector(`#dup-hidden-list .dup-listed[data-id="${target.id}"]`, { state: 'attached' });
    expect(await page.textContent('#dup-hidden-count')).toBe('1');
    // Search no longer finds it: the photo's neighbour's similar photos leave it out.
    const similar = (await (await fetch(`${server.url}/api/images/${body.groups[0]!.keeperId}/similar?limit=100`)).json()) as { results: { id: number }[] };
    expect(similar.results.map((r) => r.id)).not.toContain(target.id);

    const unhidden = page.waitForResponse((r) => isApi(r, 'POST', '/api/duplicates/unhide'));
    const reloaded = found(() => page.locator('.dup-toast', { hasText: 'from search' }).locator('.dup-toast-undo').click());
    expect((await unhidden).status()).toBe(200);
    await reloaded;
    await page.waitForSelector(`.dup-photo[data-id="${target.id}"]`, { state: 'attached' });
    expect(await page.textContent('#dup-hidden-count')).toBe('0');
    const back = (await (await fetch(`${server.url}/api/images/${body.groups[0]!.keeperId}/similar?limit=100`)).json()) as { results: { id: number }[] };
    expect(back.results.map((r) => r.id)).toContain(target.id);
  });

  it('moves a photo to .clipdex-trash and Put back returns the very same file', async () => {
    const body = await found(() => page.click('#dup-refresh'));
    const target = body.groups[0]!.photos.find((p) => !p.keeper)!;
    const bytes = await readFile(target.path);
    const trashed = page.waitForResponse((r) => isApi(r, 'POST', '/api/duplicates/trash'));
    await page.click(`.dup-photo[data-id="${target.id}"] .dup-trash`);
    const moved = (await (await trashed).json()) as { trashed: { trashId: number; trashPath: string }[]; trashCount: number };
    expect(moved.trashCount).toBe(1);
    expect(moved.trashed[0]!.trashPath).toBe(join(photos, '.clipdex-trash', target.path.slice(photos.length + 1)));
    await expect(stat(target.path)).rejects.toThrow(/ENOENT/);
    expect(await readFile(moved.trashed[0]!.trashPath)).toEqual(bytes);
    await page.waitForSelector(`.dup-photo[data-id="${target.id}"]`, { state: 'detached' });
    await page.waitForSelector(`#dup-trash-list .dup-listed[data-trash-id="${moved.trashed[0]!.trashId}"]`, { state: 'attached' });
    expect(await page.textContent('#dup-trash-count')).toBe('1');
    await page.screenshot({ path: join(ARTIFACTS, 'duplicates-02-trashed.png'), fullPage: true });

    // The move's toast (with its own Undo) sits over the trash list for 15 s; a person closes it to reach the
    // list's Put back, and so does the test (a click would otherwise wait for the toast to time out).
    await page.click('.dup-toast .chip-remove');
    await page.waitForSelector('.dup-toast', { state: 'detached' });
    await page.click('.dup-aside:has(#dup-trash-list) summary');
    const undone = page.waitForResponse((r) => isApi(r, 'POST', '/api/duplicates/undo'));
    const reloaded = found(() => page.click(`#dup-trash-list .dup-listed[data-trash-id="${moved.trashed[0]!.trashId}"] .dup-undo`));
    expect(await (await undone).json()).toMatchObject({ restored: [{ imageId: target.id, path: target.path, inLibrary: true }], trashCount: 0 });
    await reloaded;
    expect(await readFile(target.path)).toEqual(bytes);
    await page.waitForSelector(`.dup-photo[data-id="${target.id}"]`, { state: 'attached' });
    expect(await page.textContent('#dup-trash-count')).toBe('0');
    // The server's watcher saw the file leave and come back; the photo is still the one indexed, same id.
    const meta = (await (await fetch(`${server.url}/api/images/${target.id}`)).json()) as { path: string; status: string };
    expect(meta).toMatchObject({ path: target.path, status: 'indexed' });
  });

  it('made no console errors, page errors or failed requests', () => {
    expect(pageProblems).toEqual([]);
    expect(failedResponses).toEqual([]);
  });
});
