/**
 * The CLI's start-up (issue 19): commands load their code when they run, a text search opens the text tower
 * only, and a search asks a running `clipdex serve` of the same library instead of loading the model.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import { ThreadImageEncoder } from '../src/ingest/encoder-thread.js';
import { ThreadTextEncoder } from '../src/model/text-thread.js';
import { CLI, runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

let tmp: string;
let model: string;
const files: string[] = [];
const dataDir = () => join(tmp, 'data');

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-cli-fast-'));
  model = await tinyModel(tmp);
  for (let i = 0; i < 6; i++) {
    const file = join(tmp, 'photos', `p${i}.jpg`);
    await writeJpeg(file, i + 1);
    files.push(file);
  }
  const library = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache') });
  try {
    await indexFiles(library, join(tmp, 'photos'), files);
  } finally {
    await library.close();
  }
}, 60_000);

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const cli = (...args: string[]) => runCli(['--data-dir', dataDir(), '--model', model, '--cache-dir', join(tmp, 'cache'), ...args]);

/** The search answer without its timing, which differs between any two runs. */
const untimed = (json: string) => {
  const { tookMs, ...rest } = JSON.parse(json) as { tookMs: number };
  expect(typeof tookMs).toBe('number');
  return rest;
};

describe('what the CLI loads', () => {
  /**
   * Every module the CLI resolves, as Node's module hooks see it (module.register, run in the child): the
   * ES imports of our code and of the packages (ONNX Runtime, SQLite, sharp, express are imported by name).
   */
  async function loadedBy(args: string[]): Promise<{ code: number; urls: string[] }> {
    const dir = join(tmp, `hooks-${Math.random().toString(36).slice(2)}`);
    mkdirSync(dir);
    const log = join(dir, 'resolved.txt');
    writeFileSync(
      join(dir, 'hooks.mjs'),
      `import { appendFileSync } from 'node:fs';\nlet file;\nexport function initialize(data) { file = data.file; }\nexport async function resolve(specifier, context, next) {\n  const r = await next(specifier, context);\n  appendFileSync(file, r.url + '\\n');\n  return r;\n}\n`,
    );
    writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)}, { data: { file: ${JSON.stringify(log)} } });\n`);
    const code = await new Promise<number>((resolvePromise) => {
      const child = spawn(process.execPath, ['--import', pathToFileURL(join(dir, 'register.mjs')).href, CLI, ...args], { stdio: 'ignore' });
      child.on('exit', (c) => resolvePromise(c ?? 1));
    });
    return { code, urls: existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [] };
  }

  const HEAVY = /node_modules\/(onnxruntime-node|onnxruntime-common|better-sqlite3|sharp|express|multer|chokidar|hnswlib-node|protobufjs)\//;

  it('--version, --help and a usage error load no model, database, image or server code', async () => {
    for (const args of [['--version'], ['--help'], ['search', '--help'], ['search', '--limit', 'zero', 'cat']]) {
      const { code, urls } = await loadedBy(args);
      expect(code).toBe(args.includes('zero') ? 2 : 0);
      // The hook saw the CLI itself: an empty list would pass the check below for the wrong reason.
      expect(urls.some((u) => u.endsWith('/dist/cli/commands/search.js'))).toBe(true);
      expect(urls.filter((u) => HEAVY.test(u) || /\/dist\/(library|server|inference|ingest)\//.test(u))).toEqual([]);
    }
  }, 60_000);

  it('a search loads them (the check above would see them)', async () => {
    const { code, urls } = await loadedBy(['--data-dir', dataDir(), '--model', model, '--cache-dir', join(tmp, 'cache'), 'search', '--local', 'a photo']);
    expect(code).toBe(0);
    expect(urls.some((u) => /node_modules\/onnxruntime-node\//.test(u))).toBe(true);
    expect(urls.some((u) => /node_modules\/better-sqlite3\//.test(u))).toBe(true);
  }, 60_000);
});

describe('the towers, each opened when first used', () => {
  it('a photo id opens neither; a text search opens the text tower only; an image query the image tower, ranking as with both loaded', async () => {
    const lazy = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache'), session: { lazyImageTower: true, lazyTextTower: true } });
    const eager = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache') });
    try {
      expect(eager.requireModel().model.imageTowerOpen).toBe(true);
      expect(eager.requireModel().model.textTowerOpen).toBe(true);
      const clip = lazy.requireModel().model;
      expect([clip.imageTowerOpen, clip.textTowerOpen, clip.providers]).toEqual([false, false, null]);
      expect(clip.dim).toBe(eager.requireModel().model.dim);
      // A photo id searches by its stored vector: no tower.
      const byId = await new QueryEngine(lazy).search({ terms: [{ imageId: 1 }], limit: 3 });
      expect(byId.results.map((r) => r.path)).toEqual((await new QueryEngine(eager).search({ terms: [{ imageId: 1 }], limit: 3 })).results.map((r) => r.path));
      expect([clip.imageTowerOpen, clip.textTowerOpen]).toEqual([false, false]);
      const text = { terms: [{ text: 'a red square' }], limit: 6 };
      const [byText, byTextEager] = await Promise.all([new QueryEngine(lazy).search(text), new QueryEngine(eager).search(text)]);
      expect(byText.results).toHaveLength(6);
      expect(byText.results.map((r) => [r.path, r.score])).toEqual(byTextEager.results.map((r) => [r.path, r.score]));
      expect([clip.imageTowerOpen, clip.textTowerOpen]).toEqual([false, true]);
      expect(clip.providers?.text).toBe(eager.requireModel().model.providers?.text);
      const query = { terms: [{ path: files[2]! }], limit: 6 };
      const [fromLazy, fromEager] = await Promise.all([new QueryEngine(lazy).search(query), new QueryEngine(eager).search(query)]);
      expect(clip.imageTowerOpen).toBe(true);
      expect(fromLazy.results.map((r) => [r.path, r.score])).toEqual(fromEager.results.map((r) => [r.path, r.score]));
      expect(fromLazy.results[0]!.path).toBe(files[2]);
    } finally {
      await lazy.close();
      await eager.close();
    }
  }, 60_000);

  it("serve's way: the text tower on its own thread answers as on this one, a trained version's tower too", async () => {
    const threaded = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache'), session: { lazyImageTower: true, textThread: true } });
    const eager = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache') });
    try {
      const clip = threaded.requireModel().model;
      expect(clip.text).toBeInstanceOf(ThreadTextEncoder);
      expect(clip.providers?.text).toBe(eager.requireModel().model.providers?.text);
      const phrases = ['a red square', 'kids on a beach at sunset', 'x'.repeat(300), ''];
      const [fromThread, here] = await Promise.all([clip.embedTexts(phrases), eager.requireModel().model.embedTexts(phrases)]);
      expect(fromThread.map((v) => Array.from(v))).toEqual(here.map((v) => Array.from(v)));
      // Concurrent queries each get their own answer.
      const each = await Promise.all(phrases.map((p) => clip.embedTexts([p])));
      expect(each.map(([v]) => Array.from(v!))).toEqual(here.map((v) => Array.from(v)));
      // The model's own file stands in for a trained version's (same inputs and outputs).
      const tower = await clip.openTextTowerAt(join(clip.spec.dir, clip.spec.text.file));
      try {
        expect(tower).toBeInstanceOf(ThreadTextEncoder);
        expect((await tower.encode(['a red square'])).map((v) => Array.from(v))).toEqual([Array.from(here[0]!)]);
      } finally {
        await tower.release();
      }
    } finally {
      await threaded.close();
      await eager.close();
    }
  }, 60_000);

  it("serve's way: the ingest engine lends its encoder thread's tower to image queries, and takes it back when it closes", async () => {
    const served = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache'), session: { lazyImageTower: true } });
    const eager = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache') });
    const clip = served.requireModel().model;
    const query = { terms: [{ path: files[4]! }], limit: 6 };
    const expected = (await new QueryEngine(eager).search(query)).results.map((r) => [r.path, r.score]);
    try {
      const engine = await IngestEngine.start(served, { scan: false, watch: false });
      try {
        expect(clip.imageTowerOpen).toBe(true);
        expect(clip.image).toBeInstanceOf(ThreadImageEncoder);
        const lent = await new QueryEngine(served).search(query);
        expect(lent.results.map((r) => [r.path, r.score])).toEqual(expected);
      } finally {
        await engine.close();
      }
      // Closed with the engine: a later image query opens the model's own tower.
      expect(clip.imageTowerOpen).toBe(false);
      const own = await new QueryEngine(served).search(query);
      expect(own.results.map((r) => [r.path, r.score])).toEqual(expected);
      expect(clip.image).not.toBeInstanceOf(ThreadImageEncoder);
    } finally {
      await served.close();
      await eager.close();
    }
  }, 60_000);

  it("serve's way: the image tower opens at load on an encoder thread, the engine encodes with that one, and a switch's retiring does not close it", async () => {
    const served = await Library.open({
      dataDir: dataDir(),
      model,
      cacheDir: join(tmp, 'cache'),
      session: { openImageTower: (spec) => ThreadImageEncoder.open(spec) },
    });
    const eager = await Library.open({ dataDir: dataDir(), model, cacheDir: join(tmp, 'cache') });
    const clip = served.requireModel().model;
    const query = { terms: [{ path: files[1]! }], limit: 6 };
    const expected = (await new QueryEngine(eager).search(query)).results.map((r) => [r.path, r.score]);
    try {
      const tower = clip.image;
      expect(tower).toBeInstanceOf(ThreadImageEncoder);
      const engine = await IngestEngine.start(served, { scan: false, watch: false });
      try {
        // No second copy: the model's tower is the engine's encoder, and queries still use it.
        expect(clip.image).toBe(tower);
        expect((engine as unknown as { encoder: unknown }).encoder).toBe(tower);
        expect((await new QueryEngine(served).search(query)).results.map((r) => [r.path, r.score])).toEqual(expected);
        // Handed over: the model's release (a model switch retires it) leaves the engine's encoder working.
        await clip.release();
        expect((await (tower as ThreadImageEncoder).encode(new Float32Array(3 * 224 * 224), 1))[0]).toHaveLength(clip.dim);
      } finally {
        await engine.close();
      }
      expect(clip.imageTowerOpen).toBe(false);
      await expect((tower as ThreadImageEncoder).encode(new Float32Array(3 * 224 * 224), 1)).rejects.toThrow(/closed/);
    } finally {
      await served.close();
      await eager.close();
    }
  }, 60_000);

  it('the CLI searches by an image file with the lazy tower', async () => {
    // Not in the library (an indexed file would search by its stored vector): p3's pixels, encoded now.
    const query = join(tmp, 'query.jpg');
    await writeJpeg(query, 4);
    const r = await cli('similar', '--local', query, '-k', '1');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(files[3]);
  }, 60_000);
});

describe('asking a running server', () => {
  let server: ChildProcess | undefined;
  const serverJson = () => join(dataDir(), 'server.json');

  beforeAll(async () => {
    server = spawn(process.execPath, [CLI, '--data-dir', dataDir(), '--model', model, '--cache-dir', join(tmp, 'cache'), 'serve', '--port', '0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, CLIPDEX_OCR: 'off' },
    });
    let log = '';
    server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const started = Date.now();
    while (!existsSync(serverJson())) {
      if (Date.now() - started > 60_000 || server.exitCode !== null) throw new Error(`clipdex serve did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 90_000);

  afterAll(async () => {
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server!.once('exit', r));
      server.kill('SIGTERM');
      await exited;
    }
  });

  it('serve publishes its address and pid in the data dir', () => {
    const record = JSON.parse(readFileSync(serverJson(), 'utf8'));
    expect(record).toMatchObject({ pid: server!.pid, model });
    expect(record.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('search answers from the server what it answers locally, and says the server answered', async () => {
    for (const args of [['search', 'a photo', '--all'], ['search', 'a photo', '--all', '--add', 'red', '--subtract', '1'], ['similar', '2', '-k', '3', '--all']]) {
      const served = await cli(...args);
      const local = await cli(...args, '--local');
      expect(served.code, served.stderr).toBe(0);
      expect(served.stderr).toMatch(/searched by the server at http:\/\/127\.0\.0\.1:\d+/);
      expect(local.stderr).not.toMatch(/searched by the server/);
      expect(served.stdout).not.toBe('');
      expect(served.stdout).toBe(local.stdout);
      const servedJson = await cli('--json', ...args, '--after', '2000-01-01');
      const localJson = await cli('--json', ...args, '--after', '2000-01-01', '--local');
      expect(untimed(servedJson.stdout)).toEqual(untimed(localJson.stdout));
    }
    // A date in the phrase: what it was read as comes back too.
    const [servedDated, localDated] = await Promise.all([cli('--json', 'search', 'a photo 2023', '--plain'), cli('--json', 'search', 'a photo 2023')]);
    expect(untimed(servedDated.stdout)).toMatchObject({ understood: [{ kind: 'phrase', text: 'a photo 2023' }] });
    const served = untimed((await cli('--json', 'search', 'a photo July 2023')).stdout);
    expect(served).toEqual(untimed((await cli('--json', 'search', 'a photo July 2023', '--local')).stdout));
    expect(JSON.stringify(served)).toContain('"kind":"date"');
    expect(localDated.code).toBe(0);
  }, 120_000);

  it('a query the server refuses gets the local answer: the same message and exit code', async () => {
    // More alternatives than a query may have: refused by the query syntax, after the CLI's option checks.
    const tooMany = 'a | b | c | d | e | f | g | h | i | j';
    const served = await cli('search', tooMany);
    const local = await cli('search', tooMany, '--local');
    expect(local.code).toBe(2);
    expect(served.code).toBe(local.code);
    expect(served.stdout).toBe(local.stdout);
    expect(served.stderr).toBe(local.stderr);
  }, 60_000);

  it('serve removes server.json at shutdown', async () => {
    const exited = new Promise((r) => server!.once('exit', r));
    server!.kill('SIGTERM');
    await exited;
    expect(existsSync(serverJson())).toBe(false);
  }, 30_000);

  it('a stale server.json (its process gone) is passed over: the search runs locally', async () => {
    // pid 2^22 + 1 is above Linux's pid_max default: no process has it.
    writeFileSync(serverJson(), JSON.stringify({ url: 'http://127.0.0.1:9', pid: 4_194_305, model, modelDir: model }));
    try {
      const r = await cli('search', 'a photo', '-k', '2', '--all');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(2);
      expect(r.stderr).not.toMatch(/searched by the server/);
    } finally {
      rmSync(serverJson(), { force: true });
    }
  }, 60_000);
});
