/**
 * `models import DIR --as <id>` checks the folder against the manifest it claims: a 64-d self-built model is
 * not the 512-d ViT-B/32. Real folders from the tiny model builder, real ONNX sessions, the built CLI.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModelManifest } from '../src/model/manifest.js';
import { importModel } from '../src/model/model-import.js';
import { findManifest } from '../src/model/model-registry.js';
import { buildTinyModel, type BuiltModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-import-check-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let hf: BuiltModel;
let openclip: BuiltModel;
beforeAll(async () => {
  hf = await buildTinyModel({ out: join(tmp, 'tiny-hf') });
  openclip = await buildTinyModel({ out: join(tmp, 'tiny-openclip'), layout: 'openclip' });
});

function userEnv(name: string): Record<string, string | undefined> {
  return { CLIPDEX_CACHE_DIR: join(tmp, name, 'cache'), CLIPDEX_DATA_DIR: join(tmp, name, 'data'), CLIPDEX_MODEL: undefined, HF_ENDPOINT: undefined };
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A manifest that describes the tiny hf folder exactly, with a checksum for every file. */
async function tinyManifest(): Promise<ModelManifest> {
  const base = (await findManifest('clip-vit-b-32'))!;
  return {
    ...base,
    id: 'tiny-test',
    embeddingDim: hf.arch.embedDim,
    source: { repo: 'test/tiny', revision: 'main', files: hf.files.map((path) => ({ path, sha256: sha256(join(hf.dir, path)) })) },
  };
}

describe('models import --as checks the folder against the manifest', () => {
  it('refuses a 64-d folder as the 512-d clip-vit-b-32, says what differs, and installs nothing', async () => {
    const env = userEnv('dim');
    const r = await runCli(['models', 'import', hf.dir, '--as', 'clip-vit-b-32', '--json'], env);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    expect(r.stderr).toMatch(/is not clip-vit-b-32/);
    expect(r.stderr).toMatch(/embedding dimension: 64 in the folder's config\.json, 512 in the manifest/);
    // The graphs say so too, independently of the config file.
    expect(r.stderr).toMatch(/image graph outputs 64-d image_embeds, the manifest says 512/);
    expect(r.stderr).toMatch(/text graph outputs 64-d text_embeds, the manifest says 512/);
    expect(existsSync(join(tmp, 'dim', 'cache', 'models', 'clip-vit-b-32'))).toBe(false);
    const list = await runCli(['models', 'list', '--json'], env);
    const entry = (JSON.parse(list.stdout) as { models: { id: string; downloaded: boolean }[] }).models.find((m) => m.id === 'clip-vit-b-32');
    expect(entry).toMatchObject({ downloaded: false });
  });

  it('refuses a folder in the other export layout', async () => {
    const r = await runCli(['models', 'import', openclip.dir, '--as', 'clip-vit-b-32'], userEnv('layout'));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/export layout: the folder is an openclip export \(visual\/model\.onnx\), clip-vit-b-32 is hf/);
  });

  it('accepts the folder a manifest describes, checksums included', async () => {
    const result = await importModel(hf.dir, { manifest: await tinyManifest(), cacheRoot: join(tmp, 'match', 'cache') });
    expect(result).toMatchObject({ id: 'tiny-test', files: hf.files.length });
  });

  it('refuses a file whose sha256 is not the manifest\'s', async () => {
    const manifest = await tinyManifest();
    const wrong = '0'.repeat(64);
    manifest.source!.files = manifest.source!.files.map((f) => (f.path === 'onnx/text_model.onnx' ? { ...f, sha256: wrong } : f));
    await expect(importModel(hf.dir, { manifest, cacheRoot: join(tmp, 'sha', 'cache') })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(new RegExp(`onnx/text_model\\.onnx: sha256 ${sha256(join(hf.dir, 'onnx/text_model.onnx'))} \\(the manifest has ${wrong}\\)`)),
    });
    expect(existsSync(join(tmp, 'sha', 'cache', 'models', 'tiny-test'))).toBe(false);
  });

  it('refuses graphs whose input and output names are not the manifest\'s', async () => {
    const manifest = await tinyManifest();
    manifest.vision = { ...manifest.vision, input: 'image', output: 'embedding' };
    await expect(importModel(hf.dir, { manifest, cacheRoot: join(tmp, 'io', 'cache') })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/image graph onnx\/vision_model\.onnx: inputs pixel_values, the manifest names image;.*outputs image_embeds, the manifest names embedding/),
    });
  });
});
