/** The REST API over a real HTTP server, a real library and the self-built model. */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-api-'));
const photos = join(tmp, 'photos');
const outside = join(tmp, 'outside');
let library: Library;
let server: RunningServer;
let ids: number[];

async function makeImage(file: string, r: number, g: number, b: number, stripe = false): Promise<void> {
  const base = sharp({ create: { width: 320, height: 240, channels: 3, background: { r, g, b } } });
  const img = stripe
    ? base.composite([{ input: { create: { width: 80, height: 240, channels: 3, background: { r: 255 - r, g: 255 - g, b: 255 - b } } }, left: 120, top: 0 }])
    : base;
  await img.jpeg({ quality: 92 }).toFile(file);
}

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  mkdirSync(join(photos, 'sub'), { recursive: true });
  mkdirSync(outside, { recursive: true });
  const files = [
    join(photos, 'red.jpg'),
    join(photos, 'green.jpg'),
    join(photos, 'blue.jpg'),
    join(photos, 'sub', 'red-striped.jpg'),
    join(photos, 'sub', 'yellow.jpg'),
  ];
  await makeImage(files[0]!, 220, 30, 30);
  await makeImage(files[1]!, 30, 200, 40);
  await makeImage(files[2]!, 20, 40, 210);
  await makeImage(files[3]!, 220, 30, 30, true);
  await makeImage(files[4]!, 230, 220, 20);
  // A duplicate of red.jpg under another name: same content, same embedding.
  copyFileSync(files[0]!, join(photos, 'red-copy.jpg'));
  files.push(join(photos, 'red-copy.jpg'));
  // A file inside the root that is a symlink to a photo outside it: never served.
  await makeImage(join(outside, 'secret.jpg'), 1, 2, 3);
  symlinkSync(join(outside, 'secret.jpg'), join(photos, 'link-out.jpg'));
  files.push(join(photos, 'link-out.jpg'));

  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  const day = 86_400_000;
  ids = await indexFiles(library, photos, files, (_f, i) => Date.UTC(2024, 0, 1) + i * day);
  server = await startServer({ library, port: 0 });
});

afterAll(async () => {
  await server?.close();
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function api(path: string, init: RequestInit = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${server.url}${path}`, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body, headers: res.headers };
}

/** A raw request with exactly the headers given (fetch will not let a test forge Host). */
function rawGet(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: server.port, path, headers, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('search API', () => {
  it('answers a phrase with ranked results carrying path, score, size, dimensions and date', async () => {
    const { status, body } = await api('/api/search?q=a%20red%20photo&limit=3');
    expect(status).toBe(200);
    expect(body.results).toHaveLength(3);
    expect(body.hasMore).toBe(true);
    const scores = body.results.map((r: { score: number }) => r.score);
    expect([...scores].sort((a, b) => b - a)).toEqual(scores);
    expect(body.results[0]).toMatchObject({ path: expect.any(String), size: expect.any(Number), width: 320, height: 240, format: 'jpeg', takenAt: expect.any(Number) });
    const page2 = await api('/api/search?q=a%20red%20photo&limit=3&offset=3');
    const all = [...body.results, ...page2.body.results].map((r: { id: number }) => r.id);
    expect(new Set(all).size).toBe(all.length);
  });

  it('finds similar photos: the exact duplicate first, the photo itself left out', async () => {
    const { status, body } = await api(`/api/images/${ids[0]}/similar?limit=3`);
    expect(status).toBe(200);
    expect(body.results[0].id).toBe(ids[5]);
    expect(body.results[0].score).toBeCloseTo(1, 4);
    expect(body.results.map((r: { id: number }) => r.id)).not.toContain(ids[0]);
  });

  it('searches by an uploaded image (multipart) and by combined weighted terms', async () => {
    const form = new FormData();
    const bytes = await sharp({ create: { width: 200, height: 200, channels: 3, background: { r: 20, g: 40, b: 210 } } }).png().toBuffer();
    form.append('image', new Blob([bytes], { type: 'image/png' }), 'query.png');
    const up = await api('/api/search', { method: 'POST', body: form });
    expect(up.status).toBe(200);
    expect(up.body.results[0].id).toBe(ids[2]); // the blue photo

    const combined = await api('/api/search', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ terms: [{ imageId: ids[0] }, { imageId: ids[3], weight: -1 }], limit: 10 }),
    });
    expect(combined.status).toBe(200);
    const order = combined.body.results.map((r: { id: number }) => r.id);
    // Subtracting the striped red photo pushes it down below the plain duplicate.
    expect(order.indexOf(ids[5])).toBeLessThan(order.indexOf(ids[3]));
  });

  it('lists the library a page at a time: newest first, then by date or path, under the search filters', async () => {
    type Listed = { images: { id: number; path: string; takenAt: number | null }[]; total: number; hasMore: boolean; offset: number; limit: number };
    const all = (await api('/api/images?limit=100')).body as Listed;
    expect(all.total).toBe(ids.length);
    expect(all.hasMore).toBe(false);
    expect(all.images.map((i) => i.id).sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
    const taken = all.images.map((i) => i.takenAt!);
    expect(taken).toEqual([...taken].sort((a, b) => b - a));
    expect(all.images[0]).toMatchObject({ path: expect.any(String), width: 320, height: 240, format: 'jpeg' });
    expect(all.images[0]).not.toHaveProperty('score');

    const page = (await api('/api/images?limit=2&offset=1')).body as Listed;
    expect(page.images.map((i) => i.id)).toEqual(all.images.slice(1, 3).map((i) => i.id));
    expect(page).toMatchObject({ offset: 1, limit: 2, total: ids.length, hasMore: true });
    const oldest = (await api('/api/images?sort=date-asc&limit=1')).body as Listed;
    expect(oldest.images[0]!.id).toBe(all.images.at(-1)!.id);
    const byPath = (await api('/api/images?sort=path')).body as Listed;
    expect(byPath.images.map((i) => i.path)).toEqual(all.images.map((i) => i.path).sort());

    const sub = (await api(`/api/images?folder=${encodeURIComponent(join(photos, 'sub'))}`)).body as Listed;
    expect(sub.images.map((i) => i.path).sort()).toEqual([join(photos, 'sub', 'red-striped.jpg'), join(photos, 'sub', 'yellow.jpg')]);
    expect(sub.total).toBe(2);
    for (const bad of ['sort=relevance', 'limit=0', 'limit=501', 'offset=-1', 'after=yesterday']) {
      const r = await api(`/api/images?${bad}`);
      expect(r.status, bad).toBe(400);
      expect(r.body.error.code, bad).toBe('INVALID_ARGUMENT');
    }
  });

  it('filters exactly by folder, date and format, and sorts by date', async () => {
    const folder = await api(`/api/search?q=photo&folder=${encodeURIComponent(join(photos, 'sub'))}`);
    expect(folder.body.results.map((r: { path: string }) => r.path).sort()).toEqual([join(photos, 'sub', 'red-striped.jpg'), join(photos, 'sub', 'yellow.jpg')]);
    const dated = await api('/api/search?q=photo&after=2024-01-02&before=2024-01-04');
    expect(dated.body.results.map((r: { id: number }) => r.id).sort()).toEqual([ids[1], ids[2]].sort());
    const png = await api('/api/search?q=photo&format=png');
    expect(png.body.results).toEqual([]);
    const byDate = await api('/api/search?q=photo&sort=date-asc&minScoreRatio=0');
    const times = byDate.body.results.map((r: { takenAt: number }) => r.takenAt);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it('rejects bad requests with a 4xx JSON error, never a 5xx', async () => {
    const cases: [string, RequestInit | undefined, number][] = [
      ['/api/search', undefined, 400],
      ['/api/search?q=', undefined, 400],
      ['/api/search?q=x&limit=0', undefined, 400],
      ['/api/search?q=x&limit=abc', undefined, 400],
      ['/api/search?q=x&after=not-a-date', undefined, 400],
      ['/api/search?q=x&format=%3Cscript%3E', undefined, 400],
      ['/api/images/0', undefined, 400],
      ['/api/images/abc', undefined, 400],
      ['/api/images/999999', undefined, 404],
      ['/api/images/999999/similar', undefined, 404],
      ['/api/nope', undefined, 404],
      ['/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' }, 400],
      ['/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ terms: [{ text: 'x', weight: -1 }] }) }, 400],
      ['/api/search', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ terms: [{ path: '/etc/passwd' }] }) }, 400],
    ];
    for (const [path, init, expected] of cases) {
      const { status, body } = await api(path, init);
      expect(status, `${init?.method ?? 'GET'} ${path}`).toBe(expected);
      expect(body.error, path).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
  });

  it('answers NOT_FOUND (404) for an unknown photo id on every route that takes one', async () => {
    const json = { method: 'POST', headers: { 'content-type': 'application/json' } };
    const cases: [string, RequestInit | undefined][] = [
      ['/api/images/999999', undefined],
      ['/api/images/999999/similar', undefined],
      ['/api/images/999999/thumbnail', undefined],
      ['/api/images/999999/file', undefined],
      ['/api/search', { ...json, body: JSON.stringify({ terms: [{ imageId: 999999 }] }) }],
      ['/api/labels', { ...json, body: JSON.stringify({ imageIds: [999999], caption: 'nothing' }) }],
    ];
    for (const [path, init] of cases) {
      const { status, body } = await api(path, init);
      expect([status, body.error?.code], `${init?.method ?? 'GET'} ${path}`).toEqual([404, 'NOT_FOUND']);
      expect(body.error.message, path).toMatch(/999999/);
    }
  });

  it('refuses uploads that are not images, too big, or decompression bombs', async () => {
    const send = async (bytes: Uint8Array, name: string) => {
      const form = new FormData();
      form.append('image', new Blob([bytes]), name);
      return api('/api/search', { method: 'POST', body: form });
    };
    expect((await send(new TextEncoder().encode('hello, not an image'), 'x.jpg')).status).toBe(415);
    expect((await send(new Uint8Array(33 * 1024 * 1024), 'big.jpg')).status).toBe(413);
    const bomb = await sharp({ create: { width: 10000, height: 10000, channels: 3, background: { r: 0, g: 0, b: 0 } } }).png({ compressionLevel: 9 }).toBuffer();
    const res = await send(bomb, 'bomb.png');
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('IMAGE_TOO_LARGE');
  });
});

describe('files and thumbnails', () => {
  it('serves thumbnails and originals by id', async () => {
    const thumb = await fetch(`${server.url}/api/images/${ids[1]}/thumbnail`);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get('content-type')).toBe('image/webp');
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    expect(Math.max(meta.width!, meta.height!)).toBeLessThanOrEqual(320);
    const file = await fetch(`${server.url}/api/images/${ids[1]}/file`);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/jpeg');
  });

  it('makes a missing thumbnail again from the photo (encoded elsewhere, or the folder cleared), and only from the indexed file', async () => {
    const hash = library.images.get(ids[4]!)!.contentHash!;
    await library.thumbnails.remove(hash);
    const made = await fetch(`${server.url}/api/images/${ids[4]}/thumbnail`);
    expect(made.status).toBe(200);
    expect(made.headers.get('content-type')).toMatch(/image\/webp/);
    expect(Buffer.from(await made.arrayBuffer()).subarray(8, 12).toString()).toBe('WEBP');
    expect(await library.thumbnails.has(hash)).toBe(true);
    // The symlink leading out of the root is never read, so its missing thumbnail stays missing.
    const outside = library.images.get(ids[6]!)!.contentHash!;
    await library.thumbnails.remove(outside);
    const res = await api(`/api/images/${ids[6]}/thumbnail`);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('NOT_FOUND');
  });

  it('never serves a file outside the watched roots, even through a symlink inside one', async () => {
    const res = await api(`/api/images/${ids[6]}/file`);
    expect(res.status).toBe(404);
    for (const path of ['/api/images/..%2F..%2Fetc%2Fpasswd/file', '/api/images/%2Fetc%2Fpasswd/file', '/api/images/1%00/file', '/..%2F..%2Fetc%2Fpasswd']) {
      const r = await rawGet(path, { host: `127.0.0.1:${server.port}` });
      expect([400, 404], path).toContain(r.status);
      expect(r.body).not.toContain('root:');
    }
  });
});

describe('status, roots, models, OpenAPI', () => {
  it('reports counts, the model and execution provider, and index health', async () => {
    const { body } = await api('/api/status');
    expect(body).toMatchObject({ indexed: 7, failed: 0, model: { ready: true, providers: { image: 'cpu' } }, index: { engine: 'exact', count: 7 } });
  });

  it('describes itself with OpenAPI', async () => {
    const { body } = await api('/api/openapi.json');
    expect(body.openapi).toBe('3.1.0');
    expect(Object.keys(body.paths)).toEqual(expect.arrayContaining(['/api/search', '/api/images/{id}/similar', '/api/status', '/api/roots', '/api/training/split']));
    const q = body.paths['/api/search'].get.parameters.find((p: { name: string }) => p.name === 'q');
    expect(q).toMatchObject({ in: 'query', required: true });
  });
});

describe('access control', () => {
  it('streams events with names a browser reads as messages: a photo that failed to index is `failed`, never `error`', async () => {
    const ac = new AbortController();
    const res = await fetch(`${server.url}/api/events`, { signal: ac.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (needle: string) => {
      const deadline = Date.now() + 10_000;
      while (!text.includes(needle) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      return text.includes(needle);
    };
    try {
      expect(await readUntil('event: status')).toBe(true);
      // What the ingest engine publishes for a broken file (the engine calls its event `error`).
      server.events.publish('error', { type: 'error', imageId: 99, path: '/x/broken.jpg', code: 'DECODE_FAILED', message: 'not an image' });
      expect(await readUntil('event: failed')).toBe(true);
      const failed = text.split('\n\n').find((block) => block.startsWith('event: failed'))!;
      expect(JSON.parse(failed.split('\ndata: ')[1]!)).toMatchObject({ imageId: 99, code: 'DECODE_FAILED' });
      expect(text).not.toMatch(/^event: error$/m);
    } finally {
      ac.abort();
    }
  });

  it('refuses a foreign Host (DNS rebinding) and a foreign Origin (CSRF)', async () => {
    expect((await rawGet('/api/status', { host: 'evil.example' })).status).toBe(403);
    expect((await rawGet('/api/status', { host: `127.0.0.1:${server.port}`, origin: 'https://evil.example' })).status).toBe(403);
    expect((await rawGet('/api/status', { host: `localhost:${server.port}`, origin: `http://localhost:${server.port}` })).status).toBe(200);
    expect((await rawGet('/api/status', { host: `127.0.0.1:${server.port}`, 'sec-fetch-site': 'cross-site' })).status).toBe(403);
  });

  it('sends a strict Content-Security-Policy and no-sniff', async () => {
    const res = await fetch(`${server.url}/api/status`);
    expect(res.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('requires the token on every call when bound beyond loopback', async () => {
    const open = await startServer({ library, host: '0.0.0.0', port: 0 });
    try {
      expect(open.token).toMatch(/^[\w-]{20,}$/);
      const base = `http://127.0.0.1:${open.port}`;
      expect((await fetch(`${base}/api/status`)).status).toBe(401);
      expect((await fetch(`${base}/api/status`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } })).status).toBe(401);
      expect((await fetch(`${base}/api/status`, { headers: { authorization: `Bearer ${open.token}` } })).status).toBe(200);
      // The browser's way: /?token= once, then an HttpOnly SameSite=Strict cookie.
      const first = await fetch(`${base}/?token=${open.token}`, { redirect: 'manual' });
      expect(first.status).toBe(303);
      const cookie = first.headers.get('set-cookie')!;
      expect(cookie).toMatch(/HttpOnly/);
      expect(cookie).toMatch(/SameSite=Strict/);
      expect((await fetch(`${base}/api/status`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200);
    } finally {
      await open.close();
    }
  });
});

describe('without a model', () => {
  it('still serves status saying what is missing, and search answers 503 with the fix', async () => {
    const lib = await Library.open({ dataDir: join(tmp, 'data-nomodel'), model: 'clip-vit-b-32', cacheDir: join(tmp, 'empty-cache'), modelOptional: true });
    const s = await startServer({ library: lib, port: 0 });
    try {
      const status = (await (await fetch(`${s.url}/api/status`)).json()) as { model: unknown };
      expect(status.model).toMatchObject({ ready: false, error: { code: 'MODEL_NOT_FOUND', fix: expect.stringContaining('clipdex models pull clip-vit-b-32') } });
      const search = await fetch(`${s.url}/api/search?q=dog`);
      expect(search.status).toBe(503);
      expect(((await search.json()) as { error: { code: string } }).error.code).toBe('MODEL_NOT_FOUND');
    } finally {
      await s.close();
      await lib.close();
    }
  });
});
