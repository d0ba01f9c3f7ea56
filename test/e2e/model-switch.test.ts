/**
 * The Model panel end to end, in real headless Chromium against the real `clipdex serve`: a library indexed
 * with one self-built model (tiny, 64-d) switches to another installed one (siglip-tiny, 48-d, imported
 * into the cache as local-model-b) from the panel, shows it, and switches back at once. Waits are on the
 * page's elements and the server's answers.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';
import { runCli } from '../helpers/cli.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, startServe, watchPage, writePhotoFixture, type ServeProcess } from '../helpers/e2e-server.js';
import { projectRoot } from '../helpers/shared.js';

const ARTIFACTS = join(projectRoot, 'test-artifacts', 'e2e');

// Code passed to page.evaluate runs in the browser; this project type-checks without the DOM library.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Browserish = any;

interface ModelAnswer {
  current: { ref: string; key: string };
  choices: { id: string; key: string | null; vectors: number; current: boolean }[];
}

describe.skipIf(!HAS_CHROMIUM)(`model panel in headless Chromium ${HAS_CHROMIUM ? '' : NEEDS_CHROMIUM}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  let photoCount: number;
  let modelA: string;
  const problems: string[] = [];

  async function api<T>(path: string): Promise<T> {
    const res = await fetch(`${server.url}${path}`);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-e2e-switch-'));
    await mkdir(ARTIFACTS, { recursive: true });
    const photos = join(tmp, 'photos');
    photoCount = (await writePhotoFixture(photos, join(tmp, 'spare'))).files.length;
    modelA = (await buildTinyModel({ out: join(tmp, 'model-a'), preset: 'tiny', seed: 7 })).dir;
    const modelB = (await buildTinyModel({ out: join(tmp, 'model-b'), preset: 'siglip-tiny', seed: 7 })).dir;
    const env = { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') };
    const imported = await runCli(['models', 'import', modelB, '--name', 'model-b'], env);
    expect(imported.code, imported.stderr).toBe(0);
    server = await startServe(['--model', modelA], ['--root', photos], env);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    watchPage(page, problems);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('switches to an installed model from the panel, shows it, and switches back at once', async () => {
    await page.goto(`${server.url}/#/folders`);
    // Every photo indexed with model A first (the status bar's count).
    await page.waitForFunction((n) => Number((globalThis as Browserish).document.getElementById('status-text')?.dataset.indexed ?? -1) === n, photoCount, { timeout: 120_000 });
    await page.waitForSelector('#model-choice option[value="local-model-b"]', { state: 'attached', timeout: 30_000 });
    expect(await page.textContent('#model-current')).toBe('model-a');
    const before = await api<ModelAnswer>('/api/model');
    expect(before.current.key).toMatch(/^model-a#/);

    await page.selectOption('#model-choice', 'local-model-b');
    await page.click('#model-use');
    // Done when the panel names B as the model and offers the way back.
    await page.waitForFunction(() => (globalThis as Browserish).document.getElementById('model-current')?.textContent === 'local-model-b', undefined, { timeout: 120_000 });
    await page.waitForSelector('#model-back:not([hidden])', { timeout: 30_000 });
    expect(await page.textContent('#model-back')).toBe('Switch back to model-a');
    expect(await page.textContent('#model-switch-state')).toMatch(/Switched from model-a to local-model-b/);
    const after = await api<ModelAnswer & { switch: unknown }>('/api/model');
    expect(after.current.ref).toBe('local-model-b');
    expect(after.current.key).not.toBe(before.current.key);
    // A's vectors are kept: the choice says every photo of it is encoded.
    expect(after.choices.find((c) => c.id === modelA)).toMatchObject({ vectors: photoCount, current: false });
    const status = await api<{ model: { key: string; dim: number }; search: { key: string } }>('/api/status');
    expect(status.model.dim).toBe(48);
    expect(status.search.key).toBe(after.current.key);
    await page.screenshot({ path: join(ARTIFACTS, 'model-switch.png') });

    await page.click('#model-back');
    await page.waitForFunction(() => (globalThis as Browserish).document.getElementById('model-message')?.textContent?.startsWith('Switched to model-a: every photo already had its vectors'), undefined, { timeout: 60_000 });
    const back = await api<{ model: { key: string; dim: number } }>('/api/status');
    expect(back.model).toMatchObject({ key: before.current.key, dim: 64 });
    expect(problems).toEqual([]);
  }, 300_000);
});
