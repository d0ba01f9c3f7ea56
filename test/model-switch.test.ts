/**
 * Changing a library's model (issue 13): two self-built models of different dimensions (tiny: 64,
 * siglip-tiny: 48), a library indexed with the first. Real SQLite, real HNSW/exact indexes, real ORT
 * sessions on the re-encoder's own thread; waits are on the switcher's events, never on a clock.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAdapter } from '../src/adapter/adapter-weights.js';
import { ModelSwitcher, type EncoderFactory, type ModelSwitchEvent } from '../src/ingest/model-switch.js';
import { ThreadImageEncoder } from '../src/ingest/encoder-thread.js';
import { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { AdapterService } from '../src/train/adapter-service.js';
import { indexFiles, projectingAdapter } from './helpers/library-fixture.js';
import { tinyJpeg } from './helpers/ingest-library.js';
import { CLI, runCli } from './helpers/cli.js';
import { startServer } from '../src/server/server.js';
import { serverEvents } from './helpers/server-events.js';

const PHOTOS = 10;
let tmp: string;
let modelA: string;
let modelB: string;
let dataDir: string;
let files: string[];

const open = (model?: string) => Library.open({ dataDir, ...(model ? { model } : {}), session: { providers: ['cpu'] }, cacheDir: join(tmp, 'cache') });

/** Lets `allowed` encoder batches through, holding the rest until it is raised (a switch held mid-way). */
class Gate {
  passed = 0;
  private allowed = Infinity;
  private waiters: (() => void)[] = [];

  async pass(): Promise<void> {
    while (this.passed >= this.allowed) await new Promise<void>((r) => this.waiters.push(r));
    this.passed++;
  }

  allow(n: number): void {
    this.allowed = n;
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting) w();
  }
}

/** The re-encoder's real encoder thread, each batch first passing the gate. */
function gatedEncoder(gate: Gate): EncoderFactory {
  return async (spec) => {
    const enc = await ThreadImageEncoder.open(spec, { session: { providers: ['cpu'], threads: 1 }, batch: 2 });
    return {
      spec: enc.spec,
      image: {
        batchSize: 2,
        encode: async (pixels, count) => {
          await gate.pass();
          return enc.encode(pixels, count);
        },
      },
      close: () => enc.close(),
    };
  };
}

function nextEvent(events: ModelSwitchEvent[], listeners: Set<() => void>, match: (e: ModelSwitchEvent) => boolean): Promise<ModelSwitchEvent> {
  const found = events.find(match);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    const check = () => {
      const e = events.find(match);
      if (e) {
        listeners.delete(check);
        resolve(e);
      }
    };
    listeners.add(check);
  });
}

function recorder(): { events: ModelSwitchEvent[]; listeners: Set<() => void>; onEvent: (e: ModelSwitchEvent) => void } {
  const events: ModelSwitchEvent[] = [];
  const listeners = new Set<() => void>();
  return {
    events,
    listeners,
    onEvent: (e) => {
      if (process.env.DEBUG_SWITCH) console.log(JSON.stringify(e).slice(0, 300));
      events.push(e);
      for (const l of [...listeners]) l();
    },
  };
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-switch-'));
  modelA = (await buildTinyModel({ out: join(tmp, 'model-a'), preset: 'tiny', seed: 11, force: true })).dir;
  modelB = (await buildTinyModel({ out: join(tmp, 'model-b'), preset: 'siglip-tiny', seed: 7, force: true })).dir;
  dataDir = join(tmp, 'data');
  const photoDir = join(tmp, 'photos');
  await mkdir(photoDir, { recursive: true });
  files = [];
  for (let i = 0; i < PHOTOS; i++) {
    const f = join(photoDir, `p${i}.jpg`);
    await writeFile(f, await tinyJpeg(100 + i, 48, 40));
    files.push(f);
  }
  const lib = await open(modelA);
  try {
    await indexFiles(lib, photoDir, files);
  } finally {
    await lib.close();
  }
}, 180_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('switching a library to another model', () => {
  let keyA: string;
  let keyB: string;
  let labelsBefore: unknown;
  let resultsA: string[];

  it('records the model it was opened with; a start without --model opens that one', async () => {
    const lib = await open();
    try {
      keyA = lib.requireModel().key;
      expect(lib.requireModel().model.dim).toBe(64);
      expect(lib.models.current()).toMatchObject({ ref: modelA, key: keyA });
      expect(lib.notice).toBeNull();
      const image = lib.images.getByPath(files[0]!)!;
      lib.pairs.addUnique(image.id, 'a noisy square');
      labelsBefore = lib.pairs.list();
      resultsA = (await new QueryEngine(lib).search({ terms: [{ text: 'photo' }] })).results.map((r) => r.path);
      expect(resultsA.length).toBeGreaterThan(0);
      // A version trained on A (a fixed projection stands for a trained one: activation is what is tested).
      lib.adapters.add(keyA, encodeAdapter(projectingAdapter(64)), { note: 'on A' });
    } finally {
      await lib.close();
    }
  });

  it('a --model that is not the library\'s is used for this run only, and says how to switch', async () => {
    const lib = await open(modelB);
    try {
      expect(lib.requireModel().model.dim).toBe(48);
      expect(lib.notice).toMatch(/models use/);
      expect(lib.models.current()?.key).toBe(keyA);
      expect(lib.embeddings.count(lib.requireModel().key)).toBe(0);
    } finally {
      await lib.close();
    }
  });

  it('use B: searches answer from A while B encodes; an interrupted switch resumes without encoding a photo twice', async () => {
    const gate = new Gate();
    gate.allow(0);
    const rec = recorder();
    let lib = await open();
    let switcher = new ModelSwitcher(lib, { encoder: gatedEncoder(gate), batchSize: 2, decodeConcurrency: 1, onEvent: rec.onEvent, pollMs: 60_000, progressMs: 0 });
    const used = await switcher.use(modelB);
    keyB = used.key;
    expect(used).toMatchObject({ outcome: 'pending', done: 0, total: PHOTOS });
    expect(lib.models.target()?.key).toBe(keyB);
    switcher.start();
    // The first batch is held at the gate: the switch is under way.
    await nextEvent(rec.events, rec.listeners, (e) => e.type === 'model-switch' && e.status.state === 'encoding');
    expect(lib.searchSpace().key).toBe(keyA);
    const during = (await new QueryEngine(lib).search({ terms: [{ text: 'photo' }] })).results.map((r) => r.path);
    expect(during).toEqual(resultsA);
    expect(switcher.status()).toMatchObject({ state: 'encoding', target: { key: keyB }, total: PHOTOS });

    // Two batches through, then the process's switch stops with the third at the encoder (nothing more is written).
    gate.allow(2);
    // (A batch the pipeline hands over may be partial: two batches are 2 to 4 photos.)
    await nextEvent(rec.events, rec.listeners, (e) => e.type === 'model-switch' && e.status.done >= 2);
    const stopping = switcher.close();
    gate.allow(Infinity);
    await stopping;
    const doneAtStop = lib.models.coverage(keyB).done;
    expect(doneAtStop).toBeGreaterThanOrEqual(2);
    expect(doneAtStop).toBeLessThanOrEqual(4);
    expect(lib.searchSpace().key).toBe(keyA);
    await lib.close();

    // The next start goes on from there: only what was missing is encoded.
    const rec2 = recorder();
    lib = await open();
    expect(lib.requireModel().key).toBe(keyA);
    expect(lib.models.target()?.key).toBe(keyB);
    switcher = new ModelSwitcher(lib, { encoder: gatedEncoder(new Gate()), batchSize: 2, decodeConcurrency: 1, onEvent: rec2.onEvent, pollMs: 60_000 });
    const switched = nextEvent(rec2.events, rec2.listeners, (e) => e.type === 'model-switched');
    switcher.start();
    const event = await switched;
    expect(event).toMatchObject({ type: 'model-switched', key: keyB, encoded: PHOTOS - doneAtStop });
    expect(switcher.encoded).toBe(PHOTOS - doneAtStop);
    expect(lib.searchSpace().key).toBe(keyB);
    expect(lib.requireModel().model.dim).toBe(48);
    expect(lib.models.current()).toMatchObject({ key: keyB, ref: modelB });
    expect(lib.models.target()).toBeNull();
    const resultsB = await new QueryEngine(lib).search({ terms: [{ text: 'photo' }] });
    expect(resultsB.results.length).toBe(PHOTOS);
    // Its vectors are B's: 48-dimensional, every photo's; A's stay.
    expect(lib.embeddings.count(keyB)).toBe(PHOTOS);
    expect(lib.embeddings.count(keyA)).toBe(PHOTOS);
    expect(lib.pairs.list()).toEqual(labelsBefore);
    await switcher.close();
    await lib.close();

    // The next start without --model opens B.
    lib = await open();
    try {
      expect(lib.requireModel().key).toBe(keyB);
      expect(lib.notice).toBeNull();
    } finally {
      await lib.close();
    }
  }, 180_000);

  it('a version trained on A is refused under B, naming the model', async () => {
    const lib = await open();
    try {
      const service = new AdapterService(lib);
      expect(service.list()).toMatchObject({ versions: [], otherModels: [{ model: 'model-a', ref: modelA, versions: [1], note: expect.stringMatching(/trained on model-a; switch back/) }] });
      await expect(service.activate(1)).rejects.toMatchObject({ code: 'ADAPTER_INVALID', message: expect.stringMatching(/trained on model-a.*switch back/) });
    } finally {
      await lib.close();
    }
  });

  it('use A switches back at once, encoding nothing', async () => {
    const lib = await open();
    const gate = new Gate();
    const switcher = new ModelSwitcher(lib, { encoder: gatedEncoder(gate), pollMs: 60_000 });
    try {
      // A search that took B's space just before the switch finishes on B: its query is encoded by B's model
      // (48-d), whatever the library's model is by then (A, 64-d).
      const spaceB = lib.searchSpace();
      const used = await switcher.use(modelA);
      expect(used).toMatchObject({ outcome: 'switched', key: keyA, done: PHOTOS, total: PHOTOS });
      expect(lib.requireModel().model.dim).toBe(64);
      const lateQuery = await new QueryEngine(lib).queryVector([{ text: 'photo' }], spaceB);
      expect(lateQuery.length).toBe(48);
      expect((await spaceB.index.search(lateQuery, 3)).length).toBe(3);
      expect(switcher.encoded).toBe(0);
      expect(gate.passed).toBe(0);
      expect(lib.searchSpace().key).toBe(keyA);
      expect((await new QueryEngine(lib).search({ terms: [{ text: 'photo' }] })).results.map((r) => r.path)).toEqual(resultsA);
      expect(lib.models.current()?.key).toBe(keyA);
    } finally {
      await switcher.close();
      await lib.close();
    }
  });

  it('a pending switch can be cancelled; its vectors stay', async () => {
    const lib = await open();
    const switcher = new ModelSwitcher(lib, { pollMs: 60_000 });
    try {
      // Every photo has B's vectors: use B would switch at once. A new photo makes it pending.
      const photo = join(tmp, 'photos', 'late.jpg');
      await writeFile(photo, await tinyJpeg(999, 48, 40));
      await indexFiles(lib, join(tmp, 'photos'), [photo]);
      const used = await switcher.use(modelB);
      expect(used).toMatchObject({ outcome: 'pending', done: PHOTOS, total: PHOTOS + 1 });
      expect(await switcher.cancel()).toBe(true);
      expect(lib.models.target()).toBeNull();
      expect(lib.embeddings.count(keyB)).toBe(PHOTOS);
      expect(switcher.status().state).toBe('idle');
    } finally {
      await switcher.close();
      await lib.close();
    }
  }, 60_000);

  it('models forget refuses the current model and removes another one\'s vectors and index', async () => {
    const env = { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: join(tmp, 'cache'), CLIPDEX_PROVIDERS: 'cpu' };
    const refused = await runCli(['models', 'forget', modelA, '--yes'], env);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/current model/);
    const unconfirmed = await runCli(['models', 'forget', modelB], env);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(/--yes/);
    const forgot = await runCli(['--json', 'models', 'forget', modelB, '--yes'], env);
    expect(forgot.code, forgot.stderr).toBe(0);
    expect(JSON.parse(forgot.stdout)).toMatchObject({ key: keyB, vectors: PHOTOS });
    const lib = await open();
    try {
      expect(lib.embeddings.count(keyB)).toBe(0);
      expect(lib.embeddings.count(keyA)).toBe(PHOTOS + 1);
      expect(lib.requireModel().key).toBe(keyA);
    } finally {
      await lib.close();
    }
  }, 120_000);
});

describe('clipdex models use in a terminal', () => {
  it('prints an estimate measured on a few photos, then with --wait encodes here until the switch is done', async () => {
    const env = { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: join(tmp, 'cache'), CLIPDEX_PROVIDERS: 'cpu' };
    const used = await runCli(['--json', 'models', 'use', modelB, '--wait'], env);
    expect(used.code, used.stderr).toBe(0);
    const out = JSON.parse(used.stdout) as { outcome: string; total: number; done: number; estimate: { msPerPhoto: number; photos: number; seconds: number }; encoded: number };
    expect(out).toMatchObject({ outcome: 'switched', total: PHOTOS + 1, done: 0 });
    expect(out.estimate.photos).toBeGreaterThan(0);
    expect(out.estimate.msPerPhoto).toBeGreaterThan(0);
    expect(used.stderr).toMatch(/Switching to .*: \d+ of 11 photos to encode, about/);
    // The measured photos stay encoded: with the pass, each photo was encoded once.
    expect(out.encoded).toBe(PHOTOS + 1);
    const status = await runCli(['--json', 'status'], env);
    const s = JSON.parse(status.stdout) as { model: { key: string; dim: number }; modelSwitch: { state: string; target: unknown; current: { ref: string } } };
    expect(s.model.dim).toBe(48);
    expect(s.modelSwitch).toMatchObject({ state: 'idle', target: null, current: { ref: modelB } });
  }, 120_000);
});

describe('the model API', () => {
  it('answers the switch state, refuses bad input with 4xx, switches back at once and cancels', async () => {
    const lib = await open();
    const rec = recorder();
    const switcher = new ModelSwitcher(lib, { pollMs: 60_000, onEvent: rec.onEvent, cacheDir: join(tmp, 'cache') }).start();
    const running = await startServer({ library: lib, modelSwitch: switcher, port: 0 });
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${running.url}${path}`, { method, headers: body === undefined ? {} : { 'Content-Type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    try {
      const state = await call('GET', '/api/model');
      expect(state.status).toBe(200);
      expect(state.body.current.ref).toBe(modelB);
      expect(state.body.choices).toEqual(expect.arrayContaining([expect.objectContaining({ id: modelA, vectors: PHOTOS + 1, current: false }), expect.objectContaining({ id: modelB, current: true })]));
      expect((await call('POST', '/api/model', {})).status).toBe(400);
      expect((await call('POST', '/api/model', { id: 'no-such-model' })).status).toBe(404);
      expect((await call('DELETE', '/api/model/target')).body).toEqual({ cancelled: false });
      // A's vectors are all there: back at once, and the status says so.
      const back = await call('POST', '/api/model', { id: modelA });
      expect(back.body).toMatchObject({ outcome: 'switched', done: PHOTOS + 1, total: PHOTOS + 1 });
      expect(switcher.encoded).toBe(0);
      const status = await call('GET', '/api/status');
      expect(status.body.model.dim).toBe(64);
      expect(status.body.modelSwitch).toMatchObject({ state: 'idle', target: null, lastSwitch: { from: modelB, to: modelA } });
      expect(rec.events.some((e) => e.type === 'model-switched' && e.to === modelA)).toBe(true);
    } finally {
      await running.close();
      await switcher.close();
      await lib.close();
    }
  }, 60_000);
});

/** `clipdex serve` as a child this test can SIGKILL; resolves once it printed its URL. */
async function serveChild(env: Record<string, string>): Promise<{ child: ChildProcess; url: string; exited: Promise<void>; log: () => string }> {
  const child = spawn(process.execPath, [CLI, '--json', 'serve', '--port', '0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}): ${stderr}`)));
  });
  return { child, url: (JSON.parse(line) as { url: string }).url, exited, log: () => stderr };
}

/** Reads the server's event stream until an event of `type` whose data passes `match`. */
async function waitForServerEvent(url: string, type: string, match: (data: any) => boolean): Promise<any> {
  const controller = new AbortController();
  try {
    for await (const e of serverEvents(url, controller.signal)) if (e.type === type && match(e.data)) return e.data;
  } finally {
    controller.abort();
  }
  throw new Error(`the event stream ended before a ${type} event`);
}

describe('a server killed in the middle of a switch', () => {
  const MANY = 240;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-switch-kill-'));
    const photos = join(dir, 'photos');
    await mkdir(photos, { recursive: true });
    const list: string[] = [];
    for (let i = 0; i < MANY; i++) {
      const f = join(photos, `k${i}.jpg`);
      await writeFile(f, await tinyJpeg(5000 + i, 40, 32));
      list.push(f);
    }
    const lib = await Library.open({ dataDir: join(dir, 'data'), model: modelA, session: { providers: ['cpu'] } });
    try {
      await indexFiles(lib, photos, list);
    } finally {
      await lib.close();
    }
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('resumes at the next start, encoding only what was missing', async () => {
    const env = { CLIPDEX_DATA_DIR: join(dir, 'data'), CLIPDEX_CACHE_DIR: join(dir, 'cache'), CLIPDEX_PROVIDERS: 'cpu' };
    const first = await serveChild(env);
    try {
      const progressed = waitForServerEvent(first.url, 'model-switch', (d) => d.status?.state === 'encoding' && d.status.done > 0);
      const res = await fetch(`${first.url}/api/model`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: modelB }) });
      expect(await res.json()).toMatchObject({ outcome: 'pending', total: MANY });
      await progressed;
    } finally {
      first.child.kill('SIGKILL');
      await first.exited;
    }
    const between = await runCli(['--json', 'status'], env);
    const stopped = (JSON.parse(between.stdout) as { modelSwitch: { done: number; total: number; target: { ref: string } } }).modelSwitch;
    expect(stopped.target.ref).toBe(modelB);
    expect(stopped.done).toBeGreaterThan(0);
    expect(stopped.done, 'the kill came after the switch had finished: make MANY larger').toBeLessThan(MANY);

    const second = await serveChild(env);
    try {
      // The switch may be done before the stream opens: then the status it sends on connect says so.
      await Promise.race([
        waitForServerEvent(second.url, 'model-switched', () => true),
        waitForServerEvent(second.url, 'status', (s) => s.modelSwitch?.lastSwitch?.to === modelB),
      ]);
      const status = (await (await fetch(`${second.url}/api/status`)).json()) as { model: { dim: number }; modelSwitch: { target: unknown } };
      expect(status.model.dim).toBe(48);
      expect(status.modelSwitch.target).toBeNull();
    } finally {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    // The server's own count of what it encoded: only what the killed one had not.
    expect(second.log()).toContain(`(${MANY - stopped.done} photos encoded)`);
    const lib = await Library.open({ dataDir: join(dir, 'data'), session: { providers: ['cpu'] }, cacheDir: join(dir, 'cache') });
    try {
      expect(lib.embeddings.count(lib.requireModel().key)).toBe(MANY);
    } finally {
      await lib.close();
    }
  }, 300_000);
});

describe('a photo that cannot be read during a switch', () => {
  it('is reported with its path and reason, and the switch waits for it', async () => {
    const root = join(tmp, 'unreadable');
    await mkdir(root, { recursive: true });
    const kept = join(root, 'kept.jpg');
    const gone = join(root, 'gone.jpg');
    await writeFile(kept, await tinyJpeg(7001, 40, 32));
    await writeFile(gone, await tinyJpeg(7002, 40, 32));
    const lib = await Library.open({ dataDir: join(tmp, 'data-unreadable'), model: modelA, session: { providers: ['cpu'] }, cacheDir: join(tmp, 'cache') });
    const switcher = new ModelSwitcher(lib, { pollMs: 60_000, cacheDir: join(tmp, 'cache') });
    try {
      await indexFiles(lib, root, [kept, gone]);
      rmSync(gone);
      expect(await switcher.use(modelB)).toMatchObject({ outcome: 'pending', total: 2 });
      await expect(switcher.runToEnd()).rejects.toMatchObject({ message: expect.stringMatching(/1 photo\(s\) could not be encoded .*gone\.jpg.*the switch waits/) });
      expect(switcher.status()).toMatchObject({ state: 'waiting', done: 1, total: 2, failed: 1, failures: [{ path: gone, code: 'FILE_NOT_FOUND' }] });
      expect(lib.requireModel().model.dim).toBe(64);
      expect(lib.models.target()?.ref).toBe(modelB);
    } finally {
      await switcher.close();
      await lib.close();
    }
  }, 60_000);
});
