/**
 * Names and captions made of HTML and script, shown by the web UI: real headless Chromium against the real
 * `clipdex serve` (built CLI, self-built tiny model) watching a folder whose own name, file names, a
 * subfolder and a failed file are markup, with captions of markup added over the API and through the
 * page. Every view that shows them (results grid, viewer, failed files, labels, folders, the label bar's
 * answer, the caption filter, inline edit) must show the characters as text: `window.__xss` stays
 * undefined, no element or inline handler is made from them, the page reports no CSP violation, and the
 * literal text is what is on screen.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from '../helpers/e2e-server.js';

// Code passed to page.evaluate runs in the browser; this project type-checks without the DOM library.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Browserish = any;

/** The watched folder's own name is markup (it shows on the folders page and in every path). */
const ROOT_NAME = 'photos <svg onload=window.__xss=1>';
/** A subfolder and file pair whose path spells a whole script element (a file name cannot hold a `/`). */
const SCRIPT_DIR = '"><script>window.__xss=2<';
const SCRIPT_FILE = 'script>.jpg';
/** File names a careless page would turn into markup; each is a real photo. */
const HOSTILE_FILES = [
  '<img src=x onerror=window.__xss=3>.png',
  '"><svg onload=window.__xss=4>.jpg',
  `it's "quoted" & <b>bold<b> 'single'.jpg`,
  '&lt;img src=x onerror=window.__xss=5&gt;.jpg',
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal "${…}" in a file name is the attack being tested
  '${window.__xss=6}{{constructor.constructor(\'window.__xss=7\')()}}.jpg',
  'javascript:window.__xss=8;.jpg',
  'rtl \u202Egpj.exe.jpg',
];
/** A file that only pretends to be a photo, under a name of markup: it goes to the failed-files page. */
const HOSTILE_BROKEN = '<iframe srcdoc="<script>parent.__xss=9</script>">.jpg'.replaceAll('/', '');
/** Captions added over the API (and one through the page's own label bar, one by inline edit). */
const HOSTILE_CAPTIONS = [
  '<img src=x onerror=window.__xss=10>',
  '"><script>window.__xss=11</script>',
  "' onmouseover='window.__xss=12' x='",
  '</textarea><svg onload=window.__xss=13>',
  '&lt;b&gt;entity&lt;/b&gt; &amp;',
  '{{constructor.constructor("window.__xss=14")()}}',
];
const BAR_CAPTION = '<img src=x onerror=window.__xss=15> from the label bar';
/** Added by the labels test for itself, then edited inline into EDITED_CAPTION (the others stay as they are). */
const TO_EDIT_CAPTION = '<img src=x onerror=window.__xss=18> to be edited';
const EDITED_CAPTION = '<svg/onload=window.__xss=16> edited inline';
const SECOND_ROOT = '"><img src=x onerror=window.__xss=17>';

describe.skipIf(!HAS_CHROMIUM)(`hostile names and captions in the web UI ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let root: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  const fileNames = [...HOSTILE_FILES, SCRIPT_FILE];
  const pageProblems: string[] = [];
  const idsByName = new Map<string, number>();
  let shown = 0;

  async function api<T>(path: string, init?: RequestInit): Promise<T> {
    const res = await fetch(`${server.url}${path}`, init);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }
  const post = <T>(path: string, body: unknown) => api<T>(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  /** Texts of every element matching `selector`, as the page shows them. */
  const texts = (selector: string) => page.$$eval(selector, (els) => els.map((e) => (e as Browserish).textContent as string));

  /** Every literal must be on screen as text, each exactly once or more. */
  async function expectShown(selector: string, literals: string[], where: string): Promise<void> {
    await eventually(async () => {
      const got = await texts(selector);
      return literals.every((l) => got.includes(l));
    }, `${where}: ${JSON.stringify(literals)} in ${selector}`, 15_000).catch(async (err: Error) => {
      throw new Error(`${err.message}\nshown: ${JSON.stringify(await texts(selector))}`);
    });
    shown += literals.length;
  }

  /** Nothing of the hostile text became markup: no script ran, no element or inline handler was made. */
  async function expectInert(where: string): Promise<void> {
    const found = await page.evaluate(() => {
      const w = globalThis as Browserish;
      const all = [...w.document.querySelectorAll('*')];
      return {
        xss: w.__xss,
        handlers: all.filter((el: Browserish) => [...el.attributes].some((a: Browserish) => a.name.startsWith('on'))).map((el: Browserish) => el.outerHTML.slice(0, 120)),
        injected: all.filter((el: Browserish) => ['SCRIPT', 'IFRAME', 'SVG', 'B'].includes(el.tagName.toUpperCase()) && el.getAttribute('src') !== 'js/main.js').map((el: Browserish) => el.outerHTML.slice(0, 120)),
        imgX: all.filter((el: Browserish) => el.tagName === 'IMG' && el.getAttribute('src') === 'x').length,
        csp: w.__cspViolations as string[],
      };
    });
    // The page's own icons are inline <svg> with no handlers; count only ones carrying one of our markers.
    expect(found.xss, `${where}: window.__xss`).toBeUndefined();
    expect(found.handlers, `${where}: elements with inline handlers`).toEqual([]);
    expect(found.injected.filter((html: string) => /xss|onload|onerror|<b>/i.test(html)), `${where}: elements made from text`).toEqual([]);
    expect(found.imgX, `${where}: <img src=x>`).toBe(0);
    expect(found.csp, `${where}: CSP violations`).toEqual([]);
  }

  /**
   * Every test starts where it needs to be, whatever ran before it: the search page showing every photo,
   * the viewer closed, nothing selected.
   */
  async function showAllPhotos(): Promise<void> {
    if (await page.$('#viewer[open]')) {
      await page.keyboard.press('Escape');
      await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    }
    await page.click('nav a[data-route="search"]');
    await page.waitForSelector('#view-search:not([hidden])');
    if (await page.isVisible('#label-bar')) await page.click('#select-clear');
    await page.fill('#q', 'photo');
    await page.press('#q', 'Enter');
    await eventually(async () => (await texts('#results .card .card-name')).length === fileNames.length && (await page.getAttribute('#results', 'aria-busy')) === null, 'every photo in the grid');
    // The weaker matches too (a random model's scores decide which are strong): every hostile photo is clicked.
    if (await page.isVisible('#search-summary .cutoff-toggle[aria-expanded="false"]')) await page.click('#search-summary .cutoff-toggle');
    await eventually(async () => (await page.isHidden('#search-summary .cutoff-toggle[aria-expanded="false"]')), 'the weaker matches shown');
  }

  /** Opens the labels page anew, so it lists the labels as they are now. */
  async function openLabelsPage(): Promise<void> {
    await page.click('nav a[data-route="search"]');
    await page.click('nav a[data-route="labels"]');
    await page.waitForSelector('#view-labels:not([hidden])');
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-hostile-ui-'));
    root = join(tmp, ROOT_NAME);
    await mkdir(join(root, SCRIPT_DIR), { recursive: true });
    const photo = (i: number) =>
      sharp({ create: { width: 160, height: 120, channels: 3, background: { r: (i * 53) % 256, g: (i * 97) % 256, b: (i * 151) % 256 } } });
    for (const [i, name] of HOSTILE_FILES.entries()) {
      const file = join(root, name);
      await (name.endsWith('.png') ? photo(i).png() : photo(i).jpeg()).toFile(file);
    }
    await photo(40).jpeg().toFile(join(root, SCRIPT_DIR, SCRIPT_FILE));
    await writeFile(join(root, HOSTILE_BROKEN), 'not a photo at all');
    await mkdir(join(tmp, SECOND_ROOT));
    const model = await buildTinyModel({ out: join(tmp, 'model'), seed: 5 });
    server = await startServe(['--model', model.dir], ['--root', root], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    await eventually(async () => {
      const s = await api<{ indexed: number; failed: number; pending: number }>('/api/status');
      return s.indexed === fileNames.length && s.failed === 1 && s.pending === 0;
    }, `indexing the hostile folder\n${server.log()}`, 60_000);
    const { results } = await api<{ results: { id: number; path: string }[] }>('/api/search?q=photo&limit=100');
    for (const r of results) idsByName.set(r.path.slice(r.path.lastIndexOf('/') + 1), r.id);
    const ids = [...idsByName.values()];
    // Every hostile caption on the first photos; the first photo gets them all, so its viewer lists every one.
    for (const [i, caption] of HOSTILE_CAPTIONS.entries()) await post('/api/labels', { imageIds: [ids[0]!, ids[(i % (ids.length - 1)) + 1]!], caption });
    await post('/api/roots', { path: join(tmp, SECOND_ROOT) });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Recorded before any page script runs: a blocked inline script or handler shows up here even though CSP stopped it.
    await context.addInitScript(() => {
      const w = globalThis as Browserish;
      w.__cspViolations = [];
      w.document.addEventListener('securitypolicyviolation', (e: Browserish) => w.__cspViolations.push(`${e.violatedDirective}: ${e.sample || e.blockedURI}`));
    });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    watchPage(page, pageProblems, { dialog: 'dismiss' });
    await page.goto(server.url);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
    console.log(`[hostile-ui] ${fileNames.length + 2} hostile file/folder names, ${HOSTILE_CAPTIONS.length + 2} hostile captions; ${shown} literal texts found on screen; window.__xss never set`);
  });

  it('results grid: every file name shows as its own characters', async () => {
    await showAllPhotos();
    await expectShown('#results .card .card-name', fileNames, 'grid');
    await expectInert('grid');
  });

  it('viewer: title, full path and every caption show as text, for each hostile photo', async () => {
    await showAllPhotos();
    const results = await api<{ results: { id: number; path: string }[] }>('/api/search?q=photo&limit=60');
    for (const name of fileNames) {
      await page.click(`#results .card[data-id="${idsByName.get(name)}"]`);
      await page.waitForSelector('#viewer[open]');
      await eventually(async () => (await page.textContent('#viewer-title')) === name, `viewer title ${name}`);
      const path = results.results.find((r) => r.id === idsByName.get(name))!.path;
      expect(await page.textContent('#viewer-meta dd[data-field="path"]')).toBe(path);
      shown += 2;
      if (name === SCRIPT_FILE) expect(path).toContain(`${SCRIPT_DIR}/${SCRIPT_FILE}`); // the whole <script>…</script> is on screen
      await expectInert(`viewer of ${name}`);
      await page.keyboard.press('Escape');
      await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
    }
    // The photo carrying every caption lists them all as text.
    await page.click(`#results .card[data-id="${[...idsByName.values()][0]}"]`);
    await page.waitForSelector('#viewer[open]');
    await expectShown('#viewer-labels .label-chip-caption', HOSTILE_CAPTIONS, 'viewer labels');
    await expectInert('viewer labels');
    await page.keyboard.press('Escape');
    await eventually(async () => !(await page.$('#viewer[open]')), 'the viewer to close');
  });

  it("label bar: a caption typed into the page is sent as typed and echoed as text", async () => {
    await showAllPhotos();
    if ((await page.getAttribute('#select-mode', 'aria-pressed')) !== 'true') await page.click('#select-mode');
    const target = idsByName.get(HOSTILE_FILES[1]!)!;
    await page.click(`#results .card[data-id="${target}"]`);
    await page.fill('#label-caption', BAR_CAPTION);
    await page.click('#label-submit');
    await eventually(async () => (await page.textContent('#label-message'))?.includes(BAR_CAPTION), 'the label bar to confirm');
    shown++;
    const { labels } = await api<{ labels: { caption: string }[] }>(`/api/labels?imageId=${target}`);
    expect(labels.map((l) => l.caption)).toContain(BAR_CAPTION);
    await expectInert('label bar');
    // The labels page lists it as text too.
    await openLabelsPage();
    await expectShown('#captions-list .caption-text', [BAR_CAPTION], 'caption list');
    await expectInert('label bar caption on the labels page');
  });

  it('failed-files page: the markup-named file that is not a photo shows as text, with its reason', async () => {
    const { errors } = await api<{ errors: { path: string; message: string }[] }>('/api/errors');
    expect(errors).toHaveLength(1);
    await page.click('nav a[data-route="problems"]');
    await expectShown('#problems-body .problem-name', [HOSTILE_BROKEN], 'problems');
    await expectShown('#problems-body .problem-dir', [root], 'problems folder');
    await expectShown('#problems-body .problem-message', [errors[0]!.message], 'problems reason');
    await expectInert('problems');
  });

  it('labels page: captions, their filter, pairs and file names show as text; an inline edit stays text', async () => {
    // Its own label to edit inline, so the captions the other tests look for stay as they are.
    const toEdit = [...idsByName.values()][1]!;
    await post('/api/labels', { imageIds: [toEdit], caption: TO_EDIT_CAPTION });
    await openLabelsPage();
    const all = [...HOSTILE_CAPTIONS, TO_EDIT_CAPTION];
    await expectShown('#captions-list .caption-text', all, 'caption list');
    await expectShown('#labels-body .label-caption-text', all, 'label rows');
    await expectShown('#labels-body .label-name', [[...idsByName.keys()][0]!], 'label file names');
    // The suggestions of the caption box carry them as values.
    expect(await page.$$eval('#caption-options option', (os) => os.map((o) => (o as Browserish).value))).toEqual(expect.arrayContaining(all));
    await expectInert('labels');

    // Filtering by a hostile caption quotes it as text.
    const caption = HOSTILE_CAPTIONS[1]!;
    await page.locator('#captions-list .caption-filter', { has: page.locator('.caption-text', { hasText: caption }) }).first().click();
    await eventually(async () => (await page.textContent('#labels-filter q')) === caption, 'the filter line');
    await eventually(async () => {
      const rows = await texts('#labels-body .label-caption-text');
      return rows.length > 0 && rows.every((t) => t === caption);
    }, 'only the filtered rows');
    shown++;
    await expectInert('caption filter');
    await page.click('#labels-filter button');

    // Inline edit: the input holds the old caption as its value, the new one is saved and shown as text.
    await expectShown('#labels-body .label-caption-text', [TO_EDIT_CAPTION], 'unfiltered rows');
    // Found by its caption, then held by its id: while editing, the caption text gives way to the form.
    const rowId = await page.locator('#labels-body tr', { has: page.locator('.label-caption-text', { hasText: TO_EDIT_CAPTION }) }).first().getAttribute('data-id');
    const row = page.locator(`#labels-body tr[data-id="${rowId}"]`);
    await row.locator('.label-edit').click();
    expect(await row.locator('input.label-input').inputValue()).toBe(TO_EDIT_CAPTION);
    await row.locator('input.label-input').fill(EDITED_CAPTION);
    await row.locator('input.label-input').press('Enter');
    await expectShown('#labels-body .label-caption-text', [EDITED_CAPTION], 'edited row');
    const { labels } = await api<{ labels: { caption: string }[] }>('/api/labels?limit=1000');
    expect(labels.map((l) => l.caption)).toContain(EDITED_CAPTION);
    await expectInert('inline edit');
  });

  it('folders page: the markup-named folders show as text', async () => {
    await page.click('nav a[data-route="folders"]');
    await expectShown('#roots-list .root-path', [root, join(tmp, SECOND_ROOT)], 'folders');
    expect(await page.getAttribute(`#roots-list button[aria-label="Remove folder ${join(tmp, SECOND_ROOT).replaceAll('"', '\\"')}"]`, 'aria-label')).toBe(`Remove folder ${join(tmp, SECOND_ROOT)}`);
    await expectInert('folders');
  });

  it('ran no script from any of it: no alert, no page error, window.__xss undefined after every view', async () => {
    await page.click('nav a[data-route="training"]');
    await page.click('nav a[data-route="search"]');
    await expectInert('the end');
    expect(await page.evaluate(() => (globalThis as Browserish).__xss)).toBeUndefined();
    expect(pageProblems).toEqual([]);
  });

  it('the checks do catch markup when a page makes it (control; it cleans up after itself)', async () => {
    // What a careless `innerHTML = name` would do; the checks above must be able to fail.
    const problemsBefore = pageProblems.length;
    await page.evaluate((html) => {
      const w = globalThis as Browserish;
      const div = w.document.createElement('div');
      div.id = 'careless';
      div.innerHTML = html;
      w.document.body.append(div);
    }, HOSTILE_FILES[0]!);
    await eventually(() => page.evaluate(() => ((globalThis as Browserish).__cspViolations as string[]).length > 0), 'the CSP report of the blocked handler');
    await expect(expectInert('control')).rejects.toThrow(/inline handlers|src=x|CSP/);
    // CSP is the second line: it blocked the handler, so even this markup set nothing.
    expect(await page.evaluate(() => (globalThis as Browserish).__xss)).toBeUndefined();
    // Gone again, with its CSP report (and the console line Chromium writes for it), so the checks of any
    // test run after this one start clean.
    const isCspLine = (p: string) => p.startsWith('console:') && p.includes('Content Security Policy');
    await eventually(() => pageProblems.slice(problemsBefore).some(isCspLine), "the console's report of the blocked handler");
    for (let i = pageProblems.length - 1; i >= problemsBefore; i--) if (isCspLine(pageProblems[i]!)) pageProblems.splice(i, 1);
    await page.evaluate(() => {
      const w = globalThis as Browserish;
      w.document.getElementById('careless').remove();
      w.__cspViolations = [];
    });
    await expectInert('after the control');
  });
});
