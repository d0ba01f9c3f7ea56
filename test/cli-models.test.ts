import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hnswlibBuild } from '../src/index/hnswlib-binding.js';
import { closedEndpoint, startFakeHub, type FakeHub } from './helpers/fake-hub.js';
import { runCli } from './helpers/cli.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-cli-'));
const hubs: FakeHub[] = [];
afterAll(async () => {
  await Promise.all(hubs.map((h) => h.close()));
  rmSync(tmp, { recursive: true, force: true });
});

/** A fresh user: own data and cache dirs, no model configured. */
function userEnv(name: string, endpoint?: string): Record<string, string | undefined> {
  return {
    CLIPDEX_CACHE_DIR: join(tmp, name, 'cache'),
    CLIPDEX_DATA_DIR: join(tmp, name, 'data'),
    CLIPDEX_MODEL: undefined,
    HF_ENDPOINT: endpoint,
  };
}

// The default model's hub repository, served from a self-built model in the same layout.
const DEFAULT_REPO = 'Xenova/clip-vit-base-patch32';

describe('clipdex models (end to end, built bin)', () => {
  let modelDir: string;

  beforeAll(async () => {
    modelDir = join(tmp, 'built');
    const r = await runCli(['models', 'build-tiny', '--out', modelDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { files: string[]; embeddingDim: number };
    expect(summary.embeddingDim).toBe(64);
    expect(summary.files).toContain('onnx/vision_model.onnx');
  });

  it('pulls the default model from a hub, resuming a dropped download, then uses it', async () => {
    const hub = await startFakeHub({
      repos: { [DEFAULT_REPO]: { revision: 'main', dir: modelDir } },
      faults: { cutAfter: { 'onnx/vision_model.onnx': 500_000 } },
    });
    hubs.push(hub);
    const env = userEnv('pull', hub.endpoint);
    const pull = await runCli(['models', 'pull', 'clip-vit-b-32'], env);
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/Done: 7 files/);
    const visionGets = hub.requests.filter((r) => r.method === 'GET' && r.path.endsWith('onnx/vision_model.onnx') && r.status !== 302);
    // The server cut after 500,000 bytes; the client resumes from what it actually received (up to that),
    // and only the missing tail travels again.
    expect(visionGets).toHaveLength(2);
    expect(visionGets[0]!.range).toBeNull();
    const resumeAt = Number(/^bytes=(\d+)-$/.exec(visionGets[1]!.range ?? '')?.[1]);
    expect(resumeAt).toBeGreaterThan(0);
    expect(resumeAt).toBeLessThanOrEqual(500_000);
    expect(visionGets[1]!.bytes).toBe(statSync(join(modelDir, 'onnx', 'vision_model.onnx')).size - resumeAt);
    const pulled = join(tmp, 'pull', 'cache', 'models', 'clip-vit-b-32', 'main');
    expect(readFileSync(join(pulled, 'onnx', 'vision_model.onnx')).equals(readFileSync(join(modelDir, 'onnx', 'vision_model.onnx')))).toBe(true);

    const list = await runCli(['models', 'list', '--json'], env);
    const entry = (JSON.parse(list.stdout) as { models: { id: string; downloaded: boolean; default: boolean }[] }).models.find(
      (m) => m.id === 'clip-vit-b-32',
    );
    expect(entry).toMatchObject({ downloaded: true, default: true });

    const tok = await runCli(['tokenize', 'Hello World!'], env);
    expect(tok.code, tok.stderr).toBe(0);
    const ids = JSON.parse(tok.stdout) as number[];
    // The byte-level vocabulary of the self-built model: start 512, end 513, one id per byte in between.
    expect(ids[0]).toBe(512);
    expect(ids.at(-1)).toBe(513);
    expect(ids).toHaveLength('hello world!'.length - 1 + 2);

    const doctor = await runCli(['doctor', '--json'], env);
    const checks = (JSON.parse(doctor.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks;
    expect(checks.find((c) => c.name === 'model')).toMatchObject({ status: 'ok' });
    expect(checks.find((c) => c.name === 'execution provider')!.detail).toMatch(/image encoder on cpu/);

    // A second pull finds everything verified and transfers nothing.
    const before = hub.requests.filter((r) => r.method === 'GET').length;
    const again = await runCli(['models', 'pull', 'clip-vit-b-32'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(hub.requests.filter((r) => r.method === 'GET').length).toBe(before);
  });

  it('refuses a corrupted download: non-zero exit, nothing installed, a clear message', async () => {
    const hub = await startFakeHub({
      repos: { [DEFAULT_REPO]: { revision: 'main', dir: modelDir } },
      faults: { corrupt: ['onnx/text_model.onnx'] },
    });
    hubs.push(hub);
    const env = userEnv('corrupt', hub.endpoint);
    const r = await runCli(['models', 'pull', 'clip-vit-b-32', '--json'], env);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'CHECKSUM_MISMATCH' } });
    expect(r.stderr).toMatch(/text_model\.onnx.*does not verify/);
    const dir = join(tmp, 'corrupt', 'cache', 'models', 'clip-vit-b-32', 'main');
    expect(existsSync(join(dir, 'onnx', 'text_model.onnx'))).toBe(false);
    expect(existsSync(join(dir, '.complete.json'))).toBe(false);
    // And the model is reported missing, not half-loaded.
    const tok = await runCli(['tokenize', 'x'], env);
    expect(tok.code).toBe(3);
    expect(tok.stderr).toMatch(/not downloaded.*clipdex models pull clip-vit-b-32/);
  });

  it('says what to do when the hub cannot be reached', async () => {
    const env = userEnv('offline', await closedEndpoint());
    const r = await runCli(['models', 'pull', 'clip-vit-b-32'], env);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/could not be reached|cannot reach|unreachable/i);
    expect(r.stderr).toMatch(/clipdex models import/);
  });

  it('imports a model directory for offline machines as a local model, and lists it', async () => {
    const env = userEnv('import');
    // The self-built model is 64-d: not any known model (model-import-check.test.ts has the details).
    const asKnown = await runCli(['models', 'import', modelDir, '--as', 'clip-vit-b-16', '--json'], env);
    expect(asKnown.code).toBe(2);
    expect(asKnown.stderr).toMatch(/is not clip-vit-b-16: .*embedding dimension/);

    const local = await runCli(['models', 'import', modelDir, '--name', 'mine', '--json'], env);
    expect(JSON.parse(local.stdout)).toMatchObject({ id: 'local-mine' });
    const localDir = join(tmp, 'import', 'cache', 'models', 'local-mine', 'local');
    const doctor = await runCli(['--model', 'local-mine', 'doctor', '--json'], env);
    const checks = (JSON.parse(doctor.stdout) as { checks: { name: string; status: string }[] }).checks;
    expect(checks.find((c) => c.name === 'model')).toMatchObject({ status: 'ok' });

    // Listed beside the known models, marked as local, with where it lives and its dimension.
    const list = await runCli(['--model', 'local-mine', 'models', 'list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    const rows = (JSON.parse(list.stdout) as { models: { id: string; local: boolean }[] }).models;
    expect(rows.find((m) => m.id === 'local-mine')).toMatchObject({
      local: true,
      downloaded: true,
      default: true,
      dir: localDir,
      embeddingDim: 64,
      layout: 'hf',
    });
    expect(rows.find((m) => m.id === 'clip-vit-b-32')).toMatchObject({ local: false });
    const text = await runCli(['models', 'list'], env);
    expect(text.stdout).toMatch(/ {2}local-mine +64-d {2}imported \(local\)\n.*models import.*local-mine/);

    const notAModel = join(tmp, 'not-a-model');
    mkdirSync(notAModel, { recursive: true });
    writeFileSync(join(notAModel, 'readme.txt'), 'hello');
    const bad = await runCli(['models', 'import', notAModel, '--json'], env);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout)).toMatchObject({ error: { code: 'MODEL_INVALID' } });
  });

  it('pulls a multilingual model in the Immich layout from a hub mirror and reads it as its family', async () => {
    const nllbDir = join(tmp, 'built-nllb');
    const built = await runCli(['models', 'build-tiny', '--preset', 'nllb-siglip-tiny', '--out', nllbDir, '--json']);
    expect(built.code, built.stderr).toBe(0);
    expect(JSON.parse(built.stdout)).toMatchObject({ layout: 'openclip', embeddingDim: 48 });
    const hub = await startFakeHub({ repos: { 'immich-app/nllb-clip-base-siglip__v1': { revision: 'main', dir: nllbDir } } });
    hubs.push(hub);
    const env = userEnv('pull-nllb', hub.endpoint);
    const pull = await runCli(['models', 'pull', 'immich-nllb-clip-base-siglip-v1'], env);
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stderr).toMatch(/Done: 7 files/);
    const pulled = join(tmp, 'pull-nllb', 'cache', 'models', 'immich-nllb-clip-base-siglip-v1', 'main');
    expect(readFileSync(join(pulled, 'textual', 'tokenizer.json')).equals(readFileSync(join(nllbDir, 'textual', 'tokenizer.json')))).toBe(true);
    const doctor = await runCli(['--model', 'immich-nllb-clip-base-siglip-v1', 'doctor', '--json'], env);
    const checks = (JSON.parse(doctor.stdout) as { checks: { name: string; status: string }[] }).checks;
    expect(checks.find((c) => c.name === 'model')).toMatchObject({ status: 'ok' });
  });

  it('lists each model with its family, languages and Immich\'s Crossmodal-3600 figure', async () => {
    const env = userEnv('list-families');
    const list = await runCli(['models', 'list', '--json'], env);
    expect(list.code, list.stderr).toBe(0);
    const rows = (JSON.parse(list.stdout) as { models: { id: string; family: string; languages: string[] | null; crossmodal3600: { recall: Record<string, number>; source: string } | null; supported: boolean }[] }).models;
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get('immich-vit-b-32-openai')).toMatchObject({ family: 'clip', languages: ['en'], crossmodal3600: { recall: { English: 59.37 } } });
    expect(byId.get('immich-vit-b-16-siglip2-webli')).toMatchObject({ family: 'siglip2', supported: true, crossmodal3600: { recall: { English: 75.19 } } });
    expect(byId.get('immich-vit-b-32-siglip2-256-webli')).toMatchObject({ family: 'siglip2', crossmodal3600: { recall: { English: 73.15 } } });
    expect(byId.get('immich-nllb-clip-base-siglip-v1')).toMatchObject({ family: 'nllb-clip', supported: true, crossmodal3600: { recall: { English: 68.41, German: 84.81 } } });
    expect(byId.get('immich-xlm-roberta-large-vit-b-16plus')).toMatchObject({ family: 'm-clip', supported: true, crossmodal3600: null });
    expect(byId.get('immich-labse-vit-l-14')).toMatchObject({ family: 'm-clip', supported: true });
    for (const r of rows) if (r.crossmodal3600) expect(r.crossmodal3600.source, r.id).toMatch(/searching\.md.*Crossmodal-3600/);
    const text = await runCli(['models', 'list'], env);
    expect(text.stdout).toMatch(/immich-nllb-clip-base-siglip-v1 .*\n.*\n {4}family nllb-clip; languages: multilingual.*; Crossmodal-3600 recall \(Immich's table\): English 68\.41%, German 84\.81%/);
    expect(text.stdout).toMatch(/immich-labse-vit-l-14 .*\n.*\n {4}family m-clip; .*no Crossmodal-3600 figure in Immich's table/);
  });

  it('refuses unsupported and unknown models with a reason', async () => {
    const env = userEnv('unsupported');
    const r = await runCli(['models', 'pull', 'siglip-base-patch16-224'], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/not supported yet: SigLIP needs/);
    const xlmr = await runCli(['models', 'pull', 'immich-xlm-roberta-base-vit-b-32-laion5b'], env);
    expect(xlmr.code).toBe(3);
    expect(xlmr.stderr).toMatch(/not supported yet: its text tower/);
    const u = await runCli(['models', 'pull', 'no-such-model'], env);
    expect(u.code).toBe(3);
    expect(u.stderr).toMatch(/unknown model/);
  });

  it('doctor fails with a fix when the configured model is missing', async () => {
    const r = await runCli(['doctor'], userEnv('doctor'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/✗ model: .*not downloaded/);
    expect(r.stdout).toMatch(/fix: run `clipdex models pull clip-vit-b-32`/);
    const json = await runCli(['doctor', '--json'], userEnv('doctor'));
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false });
    const help = await runCli(['doctor', '--help']);
    expect(help.stdout).toMatch(/Exit code: 0 when nothing clipdex needs is missing.*1 when a check failed/s);
  });

  it('doctor exits 0 with warnings only', async () => {
    const r = await runCli(['--model', modelDir, 'doctor'], { ...userEnv('doctor-ok'), CLIPDEX_HNSWLIB: 'stock' });
    expect(r.stdout).toMatch(/^! vector index/m);
    expect(r.stdout).not.toMatch(/^✗/m);
    expect(r.code, r.stdout).toBe(0);
  });

  it('status prints its report but exits 3 when no model is available, 0 when one is', async () => {
    const r = await runCli(['status'], userEnv('status'));
    expect(r.stdout).toMatch(/Model {5}clip-vit-b-32: not loaded: .*not downloaded/);
    expect(r.stdout).toMatch(/Files {5}0 indexed/);
    expect(r.code).toBe(3);
    const json = await runCli(['status', '--json'], userEnv('status'));
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toMatchObject({ model: { ready: false, error: { code: 'MODEL_NOT_FOUND' } } });
    const ready = await runCli(['--model', modelDir, 'status'], userEnv('status'));
    expect(ready.code, ready.stderr).toBe(0);
    const help = await runCli(['status', '--help']);
    expect(help.stdout).toMatch(/Exit code: 0 when the library and its model are ready; 3 when the model is missing/);
  });

  it('doctor names the hnswlib build, and says how to get clipdex\'s when the stock one runs', async () => {
    const forced = await runCli(['doctor'], { ...userEnv('doctor-hnswlib'), CLIPDEX_HNSWLIB: 'stock' });
    expect(forced.stdout).toMatch(/! vector index: hnswlib-node \d+\.\d+\.\d+, stock build: CLIPDEX_HNSWLIB=stock/);
    expect(forced.stdout).toMatch(/fix: unset CLIPDEX_HNSWLIB/);
    if (hnswlibBuild.kind === 'clipdex') {
      const r = await runCli(['doctor'], userEnv('doctor-hnswlib'));
      expect(r.stdout).toMatch(/✓ vector index: hnswlib-node .*clipdex's build for this CPU/);
    }
  });

  it('rejects bad arguments with a usage error', async () => {
    const r = await runCli(['models', 'build-tiny', '--out', join(tmp, 'x'), '--preset', 'huge']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Allowed choices are tiny, vit-b-32/);
    const hf = await runCli(['models', 'build-tiny', '--out', join(tmp, 'y'), '--preset', 'mclip-tiny', '--layout', 'hf']);
    expect(hf.code).toBe(2);
    expect(hf.stderr).toMatch(/only in the Immich layout \(--layout openclip\)/);
  });
});

const vocab = sharedPath('clip', 'vocab.json');
describe.skipIf(!vocab)(`clipdex tokenize with the real CLIP vocabulary ${vocab ? '' : NEEDS_SHARED}`, () => {
  it('prints the reference ids as JSON', async () => {
    const r = await runCli(['tokenize', '--vocab', vocab!, 'a photo of a cat']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
  });
});
