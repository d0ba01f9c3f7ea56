import { spawnSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isClipdexError } from '../src/errors.js';
import { cacheDir, dataDir, modelCacheDir } from '../src/model/cache-dir.js';
import {
  hubEndpoint,
  hubFileUrl,
  isPulled,
  pullModel,
  readPullMarker,
  type PullOptions,
  type PullProgressEvent,
} from '../src/model/hub-download.js';
import type { ModelSource } from '../src/model/manifest.js';
import { closedEndpoint, startFakeHub, type FakeHub, type FakeHubOptions } from './helpers/fake-hub.js';

const REPO = 'test-org/tiny-clip';
const BIG = 'onnx/vision_model.onnx';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'clipdex-hub-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const sha256 = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex');

/** A repository of generated files: one of a few MB (redirected to the fake CDN, like an LFS file) and two small ones. */
async function makeRepo(bigSize = 3 * 1024 * 1024 + 12345): Promise<{ dir: string; contents: Map<string, Buffer> }> {
  const dir = await tempDir();
  const contents = new Map<string, Buffer>([
    ['config.json', Buffer.from(JSON.stringify({ model_type: 'clip', projection_dim: 64 }))],
    [BIG, randomBytes(bigSize)],
    ['tokenizer.json', randomBytes(200_000)],
  ]);
  for (const [path, data] of contents) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), data);
  }
  return { dir, contents };
}

function sourceOf(contents: Map<string, Buffer>, with_: { sha?: boolean; size?: boolean } = {}): ModelSource {
  return {
    repo: REPO,
    revision: 'main',
    files: [...contents].map(([path, data]) => ({
      path,
      ...(with_.sha === false ? {} : { sha256: sha256(data) }),
      ...(with_.size === false ? {} : { size: data.length }),
    })),
  };
}

async function hubFor(dir: string, extra: Omit<FakeHubOptions, 'repos'> = {}): Promise<FakeHub> {
  const hub = await startFakeHub({ repos: { [REPO]: { revision: 'main', dir } }, ...extra });
  cleanups.push(() => hub.close());
  return hub;
}

/** Every leftover download file under `dir`, resting or owned. */
async function partialsIn(dir: string): Promise<string[]> {
  const names = (await readdir(dir, { recursive: true }).catch(() => [])) as string[];
  return names.filter((n) => n.includes('.partial')).sort();
}

async function expectSameFiles(targetDir: string, contents: Map<string, Buffer>): Promise<void> {
  for (const [path, data] of contents) {
    const got = await readFile(join(targetDir, path));
    expect(got.length, path).toBe(data.length);
    expect(sha256(got), path).toBe(sha256(data));
  }
}

const fileGets = (hub: FakeHub, file: string) => hub.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/${file}`));
const fast: Partial<PullOptions> = { retryDelayMs: 1 };

describe('cache directories', () => {
  const home = '/home/someone';

  it('picks the data dir from the override, then CLIPDEX_DATA_DIR, then XDG_DATA_HOME, then ~/.local/share', () => {
    const env = { CLIPDEX_DATA_DIR: '/srv/clipdex', XDG_DATA_HOME: '/xdg/data' };
    expect(dataDir({ override: '/flag/dir', env, home })).toBe('/flag/dir');
    expect(dataDir({ env, home })).toBe('/srv/clipdex');
    expect(dataDir({ env: { XDG_DATA_HOME: '/xdg/data' }, home })).toBe('/xdg/data/clipdex');
    expect(dataDir({ env: {}, home })).toBe('/home/someone/.local/share/clipdex');
    // Relative XDG values are invalid per the spec and ignored; an empty override means "not given".
    expect(dataDir({ override: '', env: { XDG_DATA_HOME: 'rel/dir' }, home })).toBe('/home/someone/.local/share/clipdex');
  });

  it('picks the cache dir the same way, and a string argument is the override', () => {
    expect(cacheDir({ env: { CLIPDEX_CACHE_DIR: '/c', XDG_CACHE_HOME: '/x' }, home })).toBe('/c');
    expect(cacheDir({ env: { XDG_CACHE_HOME: '/x' }, home })).toBe('/x/clipdex');
    expect(cacheDir({ env: {}, home })).toBe('/home/someone/.cache/clipdex');
    expect(cacheDir('/from/flag')).toBe('/from/flag');
  });

  it('maps a model id and revision to one directory under <root>/models', () => {
    expect(modelCacheDir('Xenova/clip-vit-base-patch32', 'main', '/cache')).toBe('/cache/models/Xenova--clip-vit-base-patch32/main');
    expect(modelCacheDir('tiny', 'refs/pr/1', '/cache')).toBe('/cache/models/tiny/refs--pr--1');
  });

  it.each([
    ['../escape', 'main'],
    ['a/../../b', 'main'],
    ['/etc', 'main'],
    ['ok/name', '..'],
    ['ok/name', 'a\u0000b'],
    ['', 'main'],
    ['C:\\models', 'main'],
  ])('refuses id %j with revision %j', (id, revision) => {
    expect(() => modelCacheDir(id, revision, '/cache')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});

describe('hub URLs', () => {
  it('reads HF_ENDPOINT without its trailing slash and defaults to huggingface.co', () => {
    expect(hubEndpoint({ HF_ENDPOINT: 'https://mirror.example/hf/' })).toBe('https://mirror.example/hf');
    expect(hubEndpoint({})).toBe('https://huggingface.co');
  });

  it('encodes each path segment and the revision as a whole', () => {
    expect(hubFileUrl('https://h.example/', 'o/n', 'refs/pr/1', 'onnx/a b#.onnx')).toBe(
      'https://h.example/o/n/resolve/refs%2Fpr%2F1/onnx/a%20b%23.onnx',
    );
  });
});

describe('pullModel against a local fake hub', () => {
  it('pulls every file, verifies it, follows the CDN redirect and writes the completion marker', async () => {
    const { dir, contents } = await makeRepo();
    const hub = await hubFor(dir);
    const target = join(await tempDir(), 'model');
    const source = sourceOf(contents);

    const result = await pullModel(source, { endpoint: hub.endpoint, targetDir: target });

    await expectSameFiles(target, contents);
    expect(result.files.map((f) => f.action)).toEqual(['downloaded', 'downloaded', 'downloaded']);
    expect(await partialsIn(target)).toEqual([]);
    const big = hub.requests.filter((r) => r.path.endsWith(BIG));
    expect(big.map((r) => [r.path.split('/')[1], r.status])).toEqual([
      ['test-org', 302],
      ['cdn', 200],
    ]);

    const marker = await readPullMarker(target);
    expect(marker).toMatchObject({ repo: REPO, revision: 'main' });
    expect(marker!.files).toEqual(source.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })));
    expect(await isPulled(target, source)).toBe(true);
    expect(await isPulled(target, { ...source, revision: 'v2' })).toBe(false);

    // A second pull verifies what is there and asks the hub for nothing.
    const before = hub.requests.length;
    const again = await pullModel(source, { endpoint: hub.endpoint, targetDir: target });
    expect(again.files.map((f) => f.action)).toEqual(['skipped', 'skipped', 'skipped']);
    expect(hub.requests.length).toBe(before);

    await rm(join(target, 'tokenizer.json'));
    expect(await isPulled(target, source)).toBe(false);
  });

  it('hashes files the manifest gives no checksum for, and records the hashes in the marker', async () => {
    const { dir, contents } = await makeRepo(100_000);
    const hub = await hubFor(dir);
    const target = await tempDir();
    await pullModel(sourceOf(contents, { sha: false, size: false }), { endpoint: hub.endpoint, targetDir: target });
    const marker = await readPullMarker(target);
    expect(marker!.files.map((f) => [f.path, f.size, f.sha256])).toEqual(
      [...contents].map(([path, data]) => [path, data.length, sha256(data)]),
    );
  });

  it('keeps the partial when the connection drops, and the next pull resumes it with a Range request', async () => {
    const { dir, contents } = await makeRepo();
    const size = contents.get(BIG)!.length;
    const cut = 1_000_000;
    const hub = await hubFor(dir, { faults: { cutAfter: { [BIG]: cut } } });
    const target = await tempDir();
    const source = sourceOf(contents);

    const failure = await pullModel(source, { endpoint: hub.endpoint, targetDir: target, retries: 0 }).catch((e: unknown) => e);
    expect(isClipdexError(failure, 'DOWNLOAD_FAILED')).toBe(true);
    expect((failure as Error).message).toMatch(/interrupted/);
    expect(await partialsIn(target)).toEqual([`${BIG}.partial`]);
    const kept = (await stat(join(target, `${BIG}.partial`))).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThanOrEqual(cut);
    await expect(stat(join(target, BIG))).rejects.toThrow();
    expect(await isPulled(target, source)).toBe(false);

    const events: PullProgressEvent[] = [];
    const result = await pullModel(source, { endpoint: hub.endpoint, targetDir: target, onProgress: (e) => events.push(e) });
    const resume = fileGets(hub, BIG).at(-1)!;
    expect(resume).toMatchObject({ range: `bytes=${kept}-`, status: 206, bytes: size - kept });
    expect(result.files.find((f) => f.path === BIG)!.action).toBe('resumed');
    expect(events.find((e) => e.phase === 'resumed')).toMatchObject({ file: BIG, bytesDone: kept });
    await expectSameFiles(target, contents);
    expect(await partialsIn(target)).toEqual([]);
    expect(await isPulled(target, source)).toBe(true);
  });

  it('resumes within the same pull when retries are allowed', async () => {
    const { dir, contents } = await makeRepo();
    const hub = await hubFor(dir, { faults: { cutAfter: { [BIG]: 500_000 } } });
    const target = await tempDir();
    const result = await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target, ...fast });
    const gets = fileGets(hub, BIG).filter((r) => r.status !== 302);
    expect(gets).toHaveLength(2);
    const resumeAt = Number(/^bytes=(\d+)-$/.exec(gets[1]!.range ?? '')?.[1]);
    expect(resumeAt).toBeGreaterThan(0);
    // Only the missing tail travels again. (The server's count for the cut request may exceed what the
    // client received before the cut, so the two counts need not add up to the file size.)
    expect(gets[1]!.bytes).toBe(contents.get(BIG)!.length - resumeAt);
    expect(result.files.find((f) => f.path === BIG)!.action).toBe('resumed');
    await expectSameFiles(target, contents);
  });

  it('deletes a corrupt download and reports CHECKSUM_MISMATCH with the file and both hashes', async () => {
    const { dir, contents } = await makeRepo(400_000);
    const hub = await hubFor(dir, { faults: { corrupt: ['tokenizer.json'] } });
    const target = await tempDir();
    const expected = sha256(contents.get('tokenizer.json')!);

    const err = await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target }).catch((e: unknown) => e);
    expect(isClipdexError(err, 'CHECKSUM_MISMATCH')).toBe(true);
    const e = err as Error & { details: Record<string, string> };
    expect(e.message).toContain('tokenizer.json');
    expect(e.message).toContain(expected);
    expect(e.details.expected).toBe(expected);
    expect(e.details.actual).toMatch(/^[0-9a-f]{64}$/);
    expect(e.details.actual).not.toBe(expected);
    await expect(stat(join(target, 'tokenizer.json'))).rejects.toThrow();
    expect(await partialsIn(target)).toEqual([]);
    expect(await readPullMarker(target)).toBeNull();
  });

  it('verifies weights against the sha256 the hub advertises (X-Linked-Etag) when the manifest has none', async () => {
    const { dir, contents } = await makeRepo(400_000);
    const hub = await hubFor(dir, { faults: { corrupt: [BIG] } });
    const target = await tempDir();
    const err = await pullModel(sourceOf(contents, { sha: false, size: false }), { endpoint: hub.endpoint, targetDir: target }).catch(
      (e: unknown) => e,
    );
    expect(isClipdexError(err, 'CHECKSUM_MISMATCH')).toBe(true);
    expect((err as Error & { details: Record<string, string> }).details.expected).toBe(sha256(contents.get(BIG)!));
    expect(await readPullMarker(target)).toBeNull();

    // Without the fault the same manifest pulls and verifies, and the marker records the hub's hash.
    const clean = await hubFor(dir);
    await pullModel(sourceOf(contents, { sha: false, size: false }), { endpoint: clean.endpoint, targetDir: target });
    const marker = await readPullMarker(target);
    expect(marker!.files.find((f) => f.path === BIG)!.sha256).toBe(sha256(contents.get(BIG)!));
  });

  it('re-downloads a file that is there with the wrong content, and says so', async () => {
    const { dir, contents } = await makeRepo(200_000);
    const hub = await hubFor(dir);
    const target = await tempDir();
    const source = sourceOf(contents);
    await pullModel(source, { endpoint: hub.endpoint, targetDir: target });
    const wrong = Buffer.from(contents.get('tokenizer.json')!);
    wrong[10] = wrong[10]! ^ 1; // same size, so only the hash can tell
    await writeFile(join(target, 'tokenizer.json'), wrong);

    const events: PullProgressEvent[] = [];
    const result = await pullModel(source, { endpoint: hub.endpoint, targetDir: target, onProgress: (e) => events.push(e) });
    expect(result.files.map((f) => f.action)).toEqual(['skipped', 'skipped', 'downloaded']);
    const start = events.find((e) => e.file === 'tokenizer.json' && e.phase === 'start');
    expect(start?.note).toMatch(/sha256 .* downloading it again/);
    await expectSameFiles(target, contents);
    expect(await isPulled(target, source)).toBe(true);
  });

  it('retries 503 answers with backoff and then succeeds', async () => {
    const { dir, contents } = await makeRepo(100_000);
    const hub = await hubFor(dir, { faults: { unavailable: { 'config.json': 2 } } });
    const target = await tempDir();
    await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target, ...fast });
    expect(fileGets(hub, 'config.json').map((r) => r.status)).toEqual([503, 503, 200]);
    await expectSameFiles(target, contents);
  });

  it('gives up on a server that keeps answering 503, with DOWNLOAD_FAILED naming the status', async () => {
    const { dir, contents } = await makeRepo(100_000);
    const hub = await hubFor(dir, { faults: { unavailable: { 'config.json': 10 } } });
    const target = await tempDir();
    const err = await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target, retries: 2, ...fast }).catch((e: unknown) => e);
    expect(isClipdexError(err, 'DOWNLOAD_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/HTTP 503 \(3 attempts\)/);
    expect(fileGets(hub, 'config.json')).toHaveLength(3);
  });

  it('restarts cleanly from zero when the server ignores Range', async () => {
    const { dir, contents } = await makeRepo();
    const hub = await hubFor(dir, { faults: { ignoreRange: true } });
    const target = await tempDir();
    const data = contents.get(BIG)!;
    // What an interrupted earlier pull leaves behind.
    await mkdir(join(target, 'onnx'), { recursive: true });
    await writeFile(join(target, `${BIG}.partial`), data.subarray(0, 1_234_567));

    const events: PullProgressEvent[] = [];
    const result = await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target, onProgress: (e) => events.push(e) });
    const get = fileGets(hub, BIG).filter((r) => r.status !== 302);
    expect(get).toEqual([expect.objectContaining({ range: 'bytes=1234567-', status: 200, bytes: data.length })]);
    expect(events.some((e) => e.file === BIG && /ignored the resume request/.test(e.note ?? ''))).toBe(true);
    expect(result.files.find((f) => f.path === BIG)!.action).toBe('downloaded');
    await expectSameFiles(target, contents);
    expect(await partialsIn(target)).toEqual([]);
  });

  it('starts over once when a resumed file fails verification because the old partial was bad', async () => {
    const { dir, contents } = await makeRepo();
    const hub = await hubFor(dir);
    const target = await tempDir();
    await mkdir(join(target, 'onnx'), { recursive: true });
    await writeFile(join(target, `${BIG}.partial`), randomBytes(300_000)); // not a prefix of the real file

    await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target });
    const gets = fileGets(hub, BIG).filter((r) => r.status !== 302);
    expect(gets.map((r) => [r.range, r.status])).toEqual([
      ['bytes=300000-', 206],
      [null, 200],
    ]);
    await expectSameFiles(target, contents);
  });

  it('treats a partial that already holds the whole file as done, without transferring it again', async () => {
    const { dir, contents } = await makeRepo(100_000);
    const hub = await hubFor(dir);
    const target = await tempDir();
    await writeFile(join(target, 'tokenizer.json.partial'), contents.get('tokenizer.json')!);

    const result = await pullModel(sourceOf(contents, { size: false }), { endpoint: hub.endpoint, targetDir: target });
    // The HEAD probe learns the size, so no GET is needed; without it the GET would get a 416. Either way: no bytes.
    const gets = fileGets(hub, 'tokenizer.json');
    expect(gets.every((r) => r.status === 416)).toBe(true);
    expect(gets.reduce((a, r) => a + r.bytes, 0)).toBe(0);
    expect(result.files.find((f) => f.path === 'tokenizer.json')!.action).toBe('resumed');
    await expectSameFiles(target, contents);
  });

  it('reports OFFLINE, with what to do, when nothing listens at the endpoint', async () => {
    const endpoint = await closedEndpoint();
    const { contents } = await makeRepo(1000);
    const target = await tempDir();
    const err = await pullModel(sourceOf(contents), { endpoint, targetDir: target }).catch((e: unknown) => e);
    expect(isClipdexError(err, 'OFFLINE')).toBe(true);
    const message = (err as Error).message;
    expect(message).toContain(`could not be reached at ${endpoint}`);
    expect(message).toContain('HF_ENDPOINT');
    expect(message).toContain('clipdex models import <dir>');
    expect(message).toMatch(/internet connection/);
  });

  it('reports 404 as DOWNLOAD_FAILED naming the URL, for a missing file and an unknown revision', async () => {
    const { dir, contents } = await makeRepo(1000);
    const hub = await hubFor(dir);
    const target = await tempDir();
    const missing: ModelSource = { repo: REPO, revision: 'main', files: [{ path: 'onnx/missing.onnx' }] };
    const err = await pullModel(missing, { endpoint: hub.endpoint, targetDir: target }).catch((e: unknown) => e);
    expect(isClipdexError(err, 'DOWNLOAD_FAILED')).toBe(true);
    expect((err as Error).message).toContain(`${hub.endpoint}/${REPO}/resolve/main/onnx/missing.onnx`);
    expect((err as Error).message).toMatch(/404: no such file or revision/);

    const badRevision = { ...sourceOf(contents), revision: 'v9' };
    await expect(pullModel(badRevision, { endpoint: hub.endpoint, targetDir: target })).rejects.toMatchObject({
      code: 'DOWNLOAD_FAILED',
      message: expect.stringContaining('/resolve/v9/config.json'),
    });
  });

  it('reports progress per file, monotonic and ending at the total, throttled rather than per chunk', async () => {
    const { dir, contents } = await makeRepo(1_000_000);
    // Slow enough (16 KB every 2 ms) that throttling has something to throttle.
    const hub = await hubFor(dir, { faults: { slow: { [BIG]: { delayMs: 2, chunkSize: 16 * 1024 } } } });
    const target = await tempDir();
    const events: (PullProgressEvent & { at: number })[] = [];
    const total = [...contents.values()].reduce((a, b) => a + b.length, 0);
    await pullModel(sourceOf(contents), {
      endpoint: hub.endpoint,
      targetDir: target,
      progressIntervalMs: 20,
      onProgress: (e) => events.push({ ...e, at: performance.now() }),
    });

    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.totalBytesDone).toBeGreaterThanOrEqual(events[i - 1]!.totalBytesDone);
      if (events[i]!.fileIndex === events[i - 1]!.fileIndex) expect(events[i]!.bytesDone).toBeGreaterThanOrEqual(events[i - 1]!.bytesDone);
    }
    for (const e of events) {
      expect(e.totalBytes).toBe(total);
      expect(e.fileCount).toBe(3);
      expect(e.bytesDone).toBeLessThanOrEqual(e.bytesTotal!);
    }
    expect(events.filter((e) => e.phase === 'verified').map((e) => e.file)).toEqual([...contents.keys()]);
    expect(events.at(-1)).toMatchObject({ phase: 'verified', totalBytesDone: total });

    const ticks = events.filter((e) => e.phase === 'progress' && e.file === BIG);
    const chunks = Math.ceil(contents.get(BIG)!.length / (16 * 1024));
    expect(ticks.length).toBeGreaterThan(1);
    expect(ticks.length).toBeLessThan(chunks / 2);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.at - ticks[i - 1]!.at).toBeGreaterThanOrEqual(19);
  });

  it('learns sizes the manifest leaves out from HEAD requests, so the total is known from the start', async () => {
    const { dir, contents } = await makeRepo(300_000);
    const hub = await hubFor(dir);
    const target = await tempDir();
    const events: PullProgressEvent[] = [];
    await pullModel(sourceOf(contents, { size: false }), { endpoint: hub.endpoint, targetDir: target, onProgress: (e) => events.push(e) });
    const total = [...contents.values()].reduce((a, b) => a + b.length, 0);
    // One HEAD per file; weights answer with the redirect that carries X-Linked-Size, the others with 200.
    expect(hub.requests.filter((r) => r.method === 'HEAD' && (r.status === 200 || r.status === 302))).toHaveLength(3);
    expect(events[0]!.totalBytes).toBe(total);
    expect(events.at(-1)).toMatchObject({ totalBytesDone: total, totalBytes: total });
  });

  it.each(['../x', 'onnx/../../x', '/etc/passwd', 'a\\..\\x', 'a//b', 'C:/x', 'bad\u0000name', 'x.onnx.partial'])(
    'rejects the manifest path %j before any request',
    async (path) => {
      const { dir } = await makeRepo(1000);
      const hub = await hubFor(dir);
      const parent = await tempDir();
      const target = join(parent, 'model');
      const source: ModelSource = { repo: REPO, revision: 'main', files: [{ path: 'config.json' }, { path }] };
      await expect(pullModel(source, { endpoint: hub.endpoint, targetDir: target })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      expect(hub.requests).toEqual([]);
      expect(await readdir(parent)).toEqual([]);
    },
  );

  it('rejects a malformed repo, revision or checksum', async () => {
    const target = await tempDir();
    const file = { path: 'config.json' };
    for (const source of [
      { repo: '../etc', revision: 'main', files: [file] },
      { repo: REPO, revision: '../../x', files: [file] },
      { repo: REPO, revision: 'main', files: [{ path: 'a', sha256: 'abc' }] },
      { repo: REPO, revision: 'main', files: [] },
      { repo: REPO, revision: 'main', files: [file, file] },
    ]) {
      await expect(pullModel(source, { endpoint: 'http://127.0.0.1:9', targetDir: target })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });

  it('stops on abort and keeps what arrived for the next pull', async () => {
    const { dir, contents } = await makeRepo(1_000_000);
    const hub = await hubFor(dir, { faults: { slow: { [BIG]: { delayMs: 5, chunkSize: 16 * 1024 } } } });
    const target = await tempDir();
    const controller = new AbortController();
    const pull = pullModel(sourceOf(contents), {
      endpoint: hub.endpoint,
      targetDir: target,
      signal: controller.signal,
      progressIntervalMs: 0,
      onProgress: (e) => {
        if (e.file === BIG && e.bytesDone > 100_000) controller.abort();
      },
    });
    await expect(pull).rejects.toMatchObject({ name: 'AbortError' });
    const kept = (await stat(join(target, `${BIG}.partial`))).size;
    expect(kept).toBeGreaterThan(100_000);
    expect(await partialsIn(target)).toEqual([`${BIG}.partial`]);

    await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target });
    expect(fileGets(hub, BIG).at(-1)!.range).toBe(`bytes=${kept}-`);
    await expectSameFiles(target, contents);
  });
});

describe('concurrent pulls into one directory', () => {
  it('adopts a partial whose process is dead and leaves a live process’s partial alone', async () => {
    const { dir, contents } = await makeRepo();
    const data = contents.get(BIG)!;
    const hub = await hubFor(dir);
    const target = await tempDir();
    await mkdir(join(target, 'onnx'), { recursive: true });

    const deadPid = spawnSync(process.execPath, ['-e', '']).pid!;
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    cleanups.push(async () => void live.kill());
    const livePartial = join(target, `${BIG}.partial-${live.pid}`);
    await writeFile(join(target, `${BIG}.partial-${deadPid}`), data.subarray(0, 700_000));
    await writeFile(livePartial, data.subarray(0, 900_000));

    await pullModel(sourceOf(contents), { endpoint: hub.endpoint, targetDir: target });
    expect(fileGets(hub, BIG).filter((r) => r.status !== 302).map((r) => r.range)).toEqual(['bytes=700000-']);
    await expectSameFiles(target, contents);
    // The live owner's file is untouched; the dead one's was adopted and is gone.
    expect((await stat(livePartial)).size).toBe(900_000);
    expect(await partialsIn(target)).toEqual([`${BIG}.partial-${live.pid}`]);
  });

  it('two pulls of the same model into the same directory at once both end verified', async () => {
    const { dir, contents } = await makeRepo();
    const hub = await hubFor(dir, { faults: { slow: { [BIG]: { delayMs: 1, chunkSize: 256 * 1024 } } } });
    const target = await tempDir();
    const source = sourceOf(contents);
    const [a, b] = await Promise.all([
      pullModel(source, { endpoint: hub.endpoint, targetDir: target }),
      pullModel(source, { endpoint: hub.endpoint, targetDir: target }),
    ]);
    // In-process pulls of one file are serialised, so the second finds each file verified.
    expect([a, b].map((r) => r.files.map((f) => f.action).join()).sort()).toEqual([
      'downloaded,downloaded,downloaded',
      'skipped,skipped,skipped',
    ]);
    await expectSameFiles(target, contents);
    expect(await partialsIn(target)).toEqual([]);
    expect(await isPulled(target, source)).toBe(true);
  });
});
