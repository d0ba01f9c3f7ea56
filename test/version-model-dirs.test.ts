/**
 * The model folders clipdex writes for tuned versions: an activated image-tuned (or jointly tuned) version's
 * folder under `versions/models/` links the base model's unchanged files instead of copying them, and the
 * staging folder of an activation killed while it wrote one is removed when the library next opens.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { identityAdapter } from '../src/adapter/adapter-weights.js';
import { Library } from '../src/library/library.js';
import { readModelDir } from '../src/model/model-dir.js';
import { MODEL_DIRS, versionsDir } from '../src/store/adapters-repo.js';
import { exportAdaptedModel } from '../src/train/adapter-export.js';
import { tinyModel } from './helpers/library-fixture.js';

let dir: string;
let modelDir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clipdex-version-dirs-'));
  modelDir = await tinyModel(dir);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const info = { baseModel: 'tiny', baseKey: 'tiny#x', adapterVersion: 1, blend: 1, metrics: {} };

describe('a version model folder', () => {
  it('links the files it leaves unchanged (with link: true), writes the tuned tower, and follows symbolic links', async () => {
    // A hub cache's snapshot folder holds symbolic links into its blobs: here the tokenizer's vocabulary.
    const base = join(dir, 'linked-base');
    cpSync(modelDir, base, { recursive: true });
    const blobs = join(dir, 'blobs');
    mkdirSync(blobs);
    const spec = await readModelDir(base);
    const someFile = readdirSync(base).find((n) => statSync(join(base, n)).isFile() && !n.endsWith('.onnx'))!;
    renameSync(join(base, someFile), join(blobs, someFile));
    symlinkSync(join('..', 'blobs', someFile), join(base, someFile));

    // The base tower's bytes stand for the tuned one's: what matters here is that it is written, not linked.
    const tuned = new Uint8Array(readFileSync(join(base, spec.vision.file)));
    const linked = await exportAdaptedModel(spec, identityAdapter(8), join(dir, 'out-linked'), info, { image: tuned }, { link: true });
    const copied = await exportAdaptedModel(spec, identityAdapter(8), join(dir, 'out-copied'), info, { image: tuned });

    const ino = (p: string) => statSync(p).ino;
    // The locked text tower: the base file itself when linked, a copy otherwise.
    expect(ino(join(linked, spec.text.file))).toBe(ino(join(base, spec.text.file)));
    expect(ino(join(copied, spec.text.file))).not.toBe(ino(join(base, spec.text.file)));
    // The tuned image tower is always a file of its own.
    expect(ino(join(linked, spec.vision.file))).not.toBe(ino(join(base, spec.vision.file)));
    expect(readFileSync(join(linked, spec.vision.file)).equals(Buffer.from(tuned))).toBe(true);
    // The symbolic link is followed: a real file with the blob's bytes (linked to the blob, not to the link).
    for (const out of [linked, copied]) {
      const st = statSync(join(out, someFile), { throwIfNoEntry: true });
      expect(st.isFile()).toBe(true);
      expect(readFileSync(join(out, someFile)).equals(readFileSync(join(blobs, someFile)))).toBe(true);
    }
    expect(ino(join(linked, someFile))).toBe(ino(join(blobs, someFile)));
    // Both load as the same model folder.
    expect((await readModelDir(linked)).vision.file).toBe(spec.vision.file);
    expect(readdirSync(linked).sort()).toEqual(readdirSync(copied).sort());
  });

  it('a killed activation\'s staging folder is removed at the next open; a live writer\'s, a young unnamed one and other folders stay', async () => {
    const dataDir = join(dir, 'data');
    let library = await Library.open({ dataDir, model: modelDir, cacheDir: join(dir, 'cache') });
    await library.close();
    const models = join(versionsDir(dataDir), MODEL_DIRS);
    mkdirSync(models, { recursive: true });
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const names = {
      dead: `tiny-v3-0123456789ab.partial-${dead}-Ab12Cd`,
      live: `tiny-v4-0123456789ab.partial-${process.ppid}-Ef34Gh`,
      oldUnnamed: 'tiny-v5-0123456789ab.partial-Xy56Zw',
      youngUnnamed: 'tiny-v6-0123456789ab.partial-Qr78St',
      done: 'tiny-v2-0123456789ab',
    };
    for (const n of Object.values(names)) {
      mkdirSync(join(models, n, 'sub'), { recursive: true });
      writeFileSync(join(models, n, 'sub', 'vision_model.onnx'), 'x');
    }
    const anHourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(models, names.oldUnnamed), anHourAgo, anHourAgo);
    library = await Library.open({ dataDir, model: modelDir, cacheDir: join(dir, 'cache') });
    await library.close();
    expect(readdirSync(models).sort()).toEqual([names.live, names.youngUnnamed, names.done].sort());
  });
});
