/** `clipdex index` and `clipdex status` as a user runs them (the built bin, a temp library, the self-built model). */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { imageFilesUnder, tinyJpeg } from './helpers/ingest-library.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

let tmp: string;
let modelDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-ingest-cli-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 9 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const envFor = (name: string) => ({ CLIPDEX_DATA_DIR: join(tmp, name, 'data'), CLIPDEX_CACHE_DIR: join(tmp, name, 'cache') });

interface StatusJson {
  indexed: number;
  pending: number;
  failed: number;
  offline: number;
  roots: { path: string; state: string; indexed: number; failed: number; exclude: string[] }[];
  model: { ready: boolean; key: string | null; provider: string | null };
  index: { count: number } | null;
  errors?: { path: string; code: string; message: string }[];
}

const KNOWN_BAD = ['truncated.jpg', 'not-an-image.jpg', 'empty.png'];

describe.skipIf(!sharedPath('photos'))(`clipdex index ../shared/photos ${sharedPath('photos') ? '' : NEEDS_SHARED}`, () => {
  it('indexes every valid photo, reports the bad ones through status, and a second run has nothing to do', async () => {
    const photos = sharedPath('photos')!;
    const env = envFor('shared');
    const files = imageFilesUnder(photos);
    const bad = files.filter((f) => KNOWN_BAD.includes(basename(f)));

    const first = await runCli(['--model', modelDir, 'index', photos], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(new RegExp(`${files.length - bad.length} encoded`));

    const status = await runCli(['--model', modelDir, '--json', 'status', '--errors'], env);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout) as StatusJson;
    expect({ indexed: s.indexed, pending: s.pending, failed: s.failed, offline: s.offline }).toEqual({
      indexed: files.length - bad.length,
      pending: 0,
      failed: bad.length,
      offline: 0,
    });
    expect(s.roots).toMatchObject([{ path: photos, state: 'ok', indexed: files.length - bad.length, failed: bad.length }]);
    expect(s.model).toMatchObject({ ready: true, provider: 'cpu' });
    expect(s.index?.count).toBe(files.length - bad.length);
    expect(s.errors!.map((e) => e.path).sort()).toEqual(bad.sort());
    for (const e of s.errors!) {
      expect(e.code).toMatch(/^(DECODE_FAILED|NOT_AN_IMAGE|EMPTY_FILE)$/);
      expect(e.message).toContain(basename(e.path));
    }

    // The root is remembered: `clipdex index` alone revisits it, and finds nothing changed.
    const again = await runCli(['--model', modelDir, '--json', 'index'], env);
    expect(again.code, again.stderr).toBe(0);
    const run = JSON.parse(again.stdout) as { indexed: number; run: { encoded: number; reused: number; failed: number; removed: number } };
    expect(run.indexed).toBe(files.length - bad.length);
    expect(run.run).toMatchObject({ encoded: 0, reused: 0, failed: 0, removed: 0 });

    const human = await runCli(['--model', modelDir, 'status'], env);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`${files.length - bad.length} indexed, 0 pending, ${bad.length} failed, 0 offline`);
    expect(human.stdout).toContain('clipdex status --errors');
  }, 120_000);
});

describe('clipdex index', () => {
  it('applies --exclude and remembers it with the folder', async () => {
    const env = envFor('exclude');
    const root = join(tmp, 'exclude', 'photos');
    await mkdir(join(root, 'raw'), { recursive: true });
    await mkdir(join(root, 'keep'), { recursive: true });
    await writeFile(join(root, 'keep', 'a.jpg'), await tinyJpeg(1));
    await writeFile(join(root, 'raw', 'b.jpg'), await tinyJpeg(2));
    await writeFile(join(root, 'keep', 'c.tmp.jpg'), await tinyJpeg(3));
    const r = await runCli(['--model', modelDir, '--json', 'index', root, '--exclude', 'raw', '--exclude', '*.tmp.jpg', '--no-watch'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ indexed: 1, pending: 0, failed: 0 });
    // A file added later in an excluded folder stays out on the next run too.
    await writeFile(join(root, 'raw', 'd.jpg'), await tinyJpeg(4));
    await writeFile(join(root, 'keep', 'e.jpg'), await tinyJpeg(5));
    const again = await runCli(['--model', modelDir, '--json', 'index'], env);
    expect(JSON.parse(again.stdout)).toMatchObject({ indexed: 2, run: { encoded: 1 } });
    const status = JSON.parse((await runCli(['--model', modelDir, '--json', 'status'], env)).stdout) as StatusJson;
    expect(status.roots[0]!.exclude).toEqual(['raw', '*.tmp.jpg']);
  });

  it('says what is wrong with a folder that does not exist, and with nothing to index', async () => {
    const env = envFor('missing');
    const missing = await runCli(['--model', modelDir, 'index', join(tmp, 'no-such-folder')], env);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toContain('no-such-folder');
    const nothing = await runCli(['--model', modelDir, 'index'], env);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toMatch(/nothing to index/);
  });

  it('status works without a model, says why it is missing, and exits 3 (model missing)', async () => {
    const env = envFor('nomodel');
    const r = await runCli(['--model', join(tmp, 'no-model-here'), '--json', 'status'], env);
    expect(r.code, r.stderr).toBe(3);
    const s = JSON.parse(r.stdout) as StatusJson & { model: { error: { code: string } | null } };
    expect(s).toMatchObject({ indexed: 0, pending: 0, failed: 0, model: { ready: false } });
    expect(s.model.error?.code).toMatch(/^MODEL_/);
  });
});
