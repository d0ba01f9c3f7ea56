/**
 * No request reads a file outside the watched roots, and access control holds. A real server (in-process
 * startServer) over a library indexed by the real ingest engine from a folder that holds symlinks to a
 * file and a folder outside it, to /etc/passwd, and photos swapped for such symlinks after indexing; a
 * secret file outside the root carries a marker that no response may ever contain. Traversal is tried
 * in every encoding on every route, absolute paths in every parameter that takes a path; then the Host
 * and Origin checks, and the token a server bound beyond loopback requires.
 *
 * CI: the named cases plus 400 generated traversal URLs; STRESS=1: 5,000.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../../src/ingest/ingest-engine.js';
import { Library } from '../../src/library/library.js';
import { DEFAULT_WEB_DIR } from '../../src/server/app.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { encodeAdapter } from '../../src/adapter/adapter-weights.js';
import { projectingAdapter, tinyModel } from '../helpers/library-fixture.js';
import { STRESS, isErrorBody, jsonOf, pool, rawRequest, type RawRequest, type RawResponse } from './hostile-helpers.js';

const TRAVERSAL_RUNS = STRESS ? 5_000 : 400;
const SEED = Number(process.env.FUZZ_SEED ?? 4_411);

/** Bytes that exist only in files outside the root: any response holding them leaked one. */
const MARKER = `CLIPDEX-SECRET-${randomBytes(12).toString('hex')}`;
const PASSWD_LINE = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8').split('\n')[0]! : null;
const PACKAGE_JSON = '"name": "clipdex"';

let tmp: string;
let photos: string;
let outside: string;
let secretTxt: string;
let secretJpg: string;
let library: Library;
let engine: IngestEngine;
let server: RunningServer;
let sent = 0;
const serverLog: string[] = [];
let checked = 0;

/** Every response body passes through here: none may carry a secret's bytes. */
function leakIn(res: RawResponse): string | null {
  checked++;
  if (res.body.includes(MARKER)) return 'the secret marker';
  if (PASSWD_LINE && res.body.includes(PASSWD_LINE)) return '/etc/passwd';
  if (res.body.includes(PACKAGE_JSON)) return 'package.json';
  if (res.status >= 500) return `a ${res.status}; server log: ${serverLog.join('\n')}`;
  return null;
}

async function send(req: RawRequest, port = server.port): Promise<RawResponse> {
  sent++;
  const res = await rawRequest(port, req);
  const leak = leakIn(res);
  if (leak) throw new Error(`${req.method} ${req.path} leaked ${leak}: ${res.body.toString('latin1').slice(0, 200)}`);
  expect(res.status, `${req.method} ${req.path}`).toBeLessThan(500);
  return res;
}

const get = (path: string, headers: Record<string, string> = {}) => send({ method: 'GET', path, headers });
const postJson = (path: string, body: unknown) => send({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function jpegWithMarker(file: string, colour: string): Promise<void> {
  const jpeg = await sharp({ create: { width: 96, height: 64, channels: 3, background: colour } }).jpeg().toBuffer();
  // After the end-of-image marker: still a valid JPEG to every decoder, and the marker is in its bytes.
  await writeFile(file, Buffer.concat([jpeg, Buffer.from(`\n${MARKER}\n`)]));
}

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-paths-'));
  photos = join(tmp, 'photos');
  outside = join(tmp, 'outside');
  await mkdir(join(outside, 'album'), { recursive: true });
  await mkdir(photos, { recursive: true });
  secretTxt = join(outside, 'secret.txt');
  secretJpg = join(outside, 'secret.jpg');
  await writeFile(secretTxt, `${MARKER}\n`);
  await jpegWithMarker(secretJpg, '#a0a');
  await jpegWithMarker(join(outside, 'album', 'hidden.jpg'), '#0aa');
  await sharp({ create: { width: 96, height: 64, channels: 3, background: '#c22' } }).jpeg().toFile(join(photos, 'red.jpg'));
  await sharp({ create: { width: 96, height: 64, channels: 3, background: '#2c2' } }).png().toFile(join(photos, 'green.png'));
  await sharp({ create: { width: 96, height: 64, channels: 3, background: '#22c' } }).jpeg().toFile(join(photos, 'swapped.jpg'));
  await sharp({ create: { width: 96, height: 64, channels: 3, background: '#cc2' } }).jpeg().toFile(join(photos, 'swapped-passwd.jpg'));
  await symlink(secretJpg, join(photos, 'link-file.jpg'));
  await symlink(secretTxt, join(photos, 'link-text.jpg'));
  await symlink(join(outside, 'album'), join(photos, 'link-dir'));
  if (PASSWD_LINE) await symlink('/etc/passwd', join(photos, 'passwd.jpg'));

  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp), session: { providers: ['cpu'] } });
  // The real ingest path decides what the symlinks become (it follows them: a linked-in folder is the user's choice).
  engine = await IngestEngine.start(library, { roots: [photos], watch: false });
  await engine.idle();
  // After indexing, two photos are replaced by symlinks to secrets: their rows still point at those paths.
  await unlink(join(photos, 'swapped.jpg'));
  await symlink(secretJpg, join(photos, 'swapped.jpg'));
  await unlink(join(photos, 'swapped-passwd.jpg'));
  await symlink(PASSWD_LINE ? '/etc/passwd' : secretTxt, join(photos, 'swapped-passwd.jpg'));
  // An adapter so the export route reaches the file system.
  const { key, model } = library.requireModel();
  library.adapters.add(key, encodeAdapter(projectingAdapter(model.dim)), { blend: 1 });
  server = await startServer({ library, port: 0, ingest: engine, log: (m) => serverLog.push(m) });
}, 120_000);

afterAll(async () => {
  await server?.close();
  await engine?.close();
  await library?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
  console.log(`[hostile-paths] ${sent} requests sent, ${checked} response bodies searched for the secrets, none found`);
});

interface Row {
  id: number;
  path: string;
  status: string;
}
const rows = (): Row[] => library.store.db.prepare('SELECT id, path, status FROM images ORDER BY id').all() as Row[];
const rowOf = (name: string) => rows().find((r) => r.path === join(photos, name));

describe('files outside the watched roots', () => {
  it('the ingest followed the links as designed: the linked photos are indexed, the linked text files failed', () => {
    expect(rowOf('red.jpg')?.status).toBe('indexed');
    expect(rowOf('link-file.jpg')?.status).toBe('indexed');
    expect(rowOf(join('link-dir', 'hidden.jpg'))?.status).toBe('indexed');
    expect(rowOf('link-text.jpg')?.status).toBe('error');
    if (PASSWD_LINE) expect(rowOf('passwd.jpg')?.status).toBe('error');
    expect(rowOf('swapped.jpg')?.status).toBe('indexed');
  });

  it('serves the originals inside the root and none that resolves outside it: file and folder symlinks, swapped files, /etc/passwd', async () => {
    const inside = ['red.jpg', 'green.png'];
    const outsideNames = ['link-file.jpg', join('link-dir', 'hidden.jpg'), 'link-text.jpg', 'swapped.jpg', 'swapped-passwd.jpg', ...(PASSWD_LINE ? ['passwd.jpg'] : [])];
    for (const name of inside) {
      const res = await get(`/api/images/${rowOf(name)!.id}/file`);
      // The control: the route does serve files, so the 404s below are the check, not a broken route.
      expect(res.status, name).toBe(200);
      expect(res.body.equals(readFileSync(join(photos, name))), name).toBe(true);
    }
    for (const name of outsideNames) {
      const row = rowOf(name)!;
      expect(row, name).toBeDefined();
      const res = await get(`/api/images/${row.id}/file`);
      expect(res.status, name).toBe(404);
      expect(isErrorBody(jsonOf(res.body)), name).toBe(true);
      // With a Range header too (sendFile would honour it on a file it served).
      expect((await get(`/api/images/${row.id}/file`, { range: 'bytes=0-' })).status, name).toBe(404);
    }
    // Every other route on every row: metadata, thumbnail (derived pixels, never the file's bytes), similar.
    for (const row of rows()) {
      for (const suffix of ['', '/thumbnail', '/similar', '/file']) await get(`/api/images/${row.id}${suffix}`);
    }
    await get('/api/errors?limit=1000');
    await get('/api/search?q=secret&limit=500');
  });

  it('refuses traversal in every encoding, on the web root and on every path-taking route', async () => {
    const web = DEFAULT_WEB_DIR;
    const toSecret = relative(web, secretTxt);
    const toPasswd = relative(web, '/etc/passwd');
    const named = [
      '/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd',
      '/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
      '/%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd',
      '/..%5c..%5c..%5c..%5c..%5c..%5cetc%5cpasswd',
      '/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd',
      '/....//....//....//etc/passwd',
      '/js/..%2f..%2fpackage.json',
      '/js/%2e%2e/%2e%2e/package.json',
      '/%2e%2e/package.json',
      '/..;/package.json',
      `/${toSecret.split('/').map(encodeURIComponent).join('%2f')}`,
      `/${toSecret}`,
      `/${toPasswd}`,
      `/${encodeURIComponent(secretTxt)}`,
      `//${secretTxt}`,
      '/index.html%00.jpg',
      '/index.html%00/../../package.json',
      '/api/images/..%2f..%2fetc%2fpasswd/file',
      '/api/images/%2fetc%2fpasswd/file',
      '/api/images/1%2f..%2f..%2f..%2fetc%2fpasswd/file',
      '/api/images/1/file/..%2f..%2f..%2fetc%2fpasswd',
      '/api/images/1%00/file',
      `/api/images/${encodeURIComponent(secretTxt)}/file`,
      `/api/images/1/thumbnail/${encodeURIComponent(relative(join(tmp, 'data'), secretTxt))}`,
    ];
    for (const path of named) {
      const res = await get(path);
      expect([400, 403, 404], `${path}: ${res.status}`).toContain(res.status);
    }

    // Generated: every mix of dot-dot spelling, separator, prefix, target and suffix.
    const dotdot = fc.constantFrom('..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '%c0%ae%c0%ae', '..%00', '...', '..;', '%u002e%u002e');
    const sep = fc.constantFrom('/', '%2f', '%2F', '%5c', '\\', '%252f', '%c0%af', '//');
    const target = fc.constantFrom('etc/passwd', toSecret, 'package.json', relative(web, join(tmp, 'data', 'clipdex.db')), secretTxt.slice(1));
    const prefix = fc.constantFrom('/', '/js/', '/api/', '/api/images/', '/api/images/1/', '/api/images/1/file/', '/favicon.svg/');
    const suffix = fc.constantFrom('', '/file', '/thumbnail', '%00', '%00.jpg', '?x=1', '#');
    const urls = fc.sample(
      fc.tuple(prefix, fc.array(fc.tuple(dotdot, sep), { minLength: 1, maxLength: 12 }), target, suffix).map(([p, ups, t, s]) => {
        const encode = (x: string) => x.replaceAll('\\', '%5c');
        return `${p}${ups.map(([d, sp]) => d + encode(sp)).join('')}${t.split('/').map((seg) => encode(seg)).join(ups[0]![1] === '\\' ? '%5c' : ups[0]![1])}${s}`.replaceAll('#', '%23');
      }),
      { numRuns: TRAVERSAL_RUNS, seed: SEED },
    );
    const statuses = new Map<number, number>();
    await pool(
      urls.map((path) => async () => {
        const res = await get(path);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        expect([400, 403, 404], `${path}: ${res.status}`).toContain(res.status);
      }),
      8,
    );
    console.log(`[hostile-paths] ${named.length} named + ${urls.length} generated traversal URLs: ${[...statuses].sort().map(([s, n]) => `${s}:${n}`).join(' ')}`);
  }, STRESS ? 600_000 : 60_000);

  it('takes absolute and hostile paths in every path parameter without reading outside the roots', async () => {
    const hostilePaths = [outside, secretTxt, secretJpg, '/etc', '/etc/passwd', `${photos}/../outside`, `${photos}/..`, '/', `${outside}\u0000`, `${photos}\u0000/../outside`, '/proc/self/environ', 'relative/../../etc'];
    // Search filters: a folder outside the roots matches nothing; a traversal out of the root resolves out of it.
    for (const folder of hostilePaths) {
      const res = await get(`/api/search?q=photo&limit=500&folder=${encodeURIComponent(folder)}`);
      if (res.status === 200) {
        const paths = (jsonOf(res.body) as { results: { path: string }[] }).results.map((r) => r.path);
        expect(paths.every((p) => p.startsWith(`${photos}/`)), folder).toBe(true);
        if (folder !== '/' && folder !== `${photos}/..`) expect(paths, folder).toEqual([]);
      }
      await postJson('/api/search', { terms: [{ text: 'photo' }], folder, limit: 500 });
      await get(`/api/images/${rowOf('red.jpg')!.id}/similar?folder=${encodeURIComponent(folder)}`);
    }
    // Label import by folder: only indexed photos under it, found in the database, never by reading the folder.
    for (const folder of hostilePaths.filter((p) => p !== '/' && p !== `${photos}/..`)) {
      const res = await postJson('/api/labels/import', { folder });
      expect([400, 404], `${folder}: ${res.status}`).toContain(res.status);
    }
    // Label rows naming files by path: a path outside the library is a reported problem, not a label.
    const byPath = await postJson('/api/labels/import', { rows: hostilePaths.map((photo) => ({ photo, caption: 'outside' })) });
    expect(byPath.status).toBe(201);
    expect(jsonOf(byPath.body)).toMatchObject({ added: 0, problemCount: hostilePaths.length });
    // Folders to watch: relative, NUL, a file, missing, inside the root already: all refused with a reason.
    for (const path of ['relative/dir', `${outside}\u0000x`, secretTxt, join(tmp, 'missing'), join(photos, 'link-dir'), join(photos, 'red.jpg')]) {
      const res = await postJson('/api/roots', { path });
      expect([400, 403, 404], `${JSON.stringify(path)}: ${res.status} ${res.body.toString()}`).toContain(res.status);
    }
    // The root itself under another spelling is the same root, not a second one.
    const again = await postJson('/api/roots', { path: `${photos}/./` });
    expect(jsonOf(again.body)).toMatchObject({ id: library.roots.list()[0]!.id, path: photos });
    expect(library.roots.list().map((r) => r.path)).toEqual([photos]);
    // Export folders: never over an existing file or a non-empty folder, never a relative or NUL path.
    for (const dir of [secretTxt, outside, photos, '/etc', 'relative/export', `${tmp}/exp\u0000ort`, '/']) {
      const res = await postJson('/api/adapters/1/export', { dir });
      expect([400, 403, 404, 409], `${JSON.stringify(dir)}: ${res.status} ${res.body.toString().slice(0, 300)}`).toContain(res.status);
    }
    expect(readFileSync(secretTxt, 'utf8')).toBe(`${MARKER}\n`);
    expect((await readdir(outside)).sort()).toEqual(['album', 'secret.jpg', 'secret.txt']);
    // The control: an export into a new folder works, so the refusals above are checks, not a broken route.
    const fresh = join(tmp, 'export-ok');
    expect((await postJson('/api/adapters/1/export', { dir: fresh })).status).toBe(201);
    expect(statSync(fresh).isDirectory()).toBe(true);
  }, 60_000);
});

describe('access control', () => {
  const hostileHeaders: [string, Record<string, string>][] = [];
  beforeAll(() => {
    const port = server.port;
    hostileHeaders.push(
      ['Host evil.example (DNS rebinding)', { host: 'evil.example' }],
      ['Host evil.example with our port', { host: `evil.example:${port}` }],
      ['Host 127.0.0.1.nip.io', { host: `127.0.0.1.nip.io:${port}` }],
      ['Host with another port', { host: `127.0.0.1:${port + 1}` }],
      ['Host 0.0.0.0', { host: `0.0.0.0:${port}` }],
      ['Host of a LAN address', { host: `192.168.1.10:${port}` }],
      ['Origin evil.example', { host: `127.0.0.1:${port}`, origin: 'https://evil.example' }],
      ['Origin null (sandboxed frame, file://)', { host: `127.0.0.1:${port}`, origin: 'null' }],
      ['Origin of another local port', { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port + 1}` }],
      ['Origin localhost for a 127.0.0.1 Host', { host: `127.0.0.1:${port}`, origin: `http://localhost:${port}` }],
      ['Origin that is not a URL', { host: `127.0.0.1:${port}`, origin: 'not a url' }],
      ['Sec-Fetch-Site cross-site', { host: `127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site' }],
    );
  });

  it('refuses a foreign Host or Origin with 403 on every kind of route', async () => {
    const redId = rowOf('red.jpg')!.id;
    const targets: RawRequest[] = [
      { method: 'GET', path: '/api/status' },
      { method: 'GET', path: '/' },
      { method: 'GET', path: `/api/images/${redId}/file` },
      { method: 'GET', path: `/api/images/${redId}/thumbnail` },
      { method: 'GET', path: '/api/events' },
      { method: 'POST', path: '/api/labels', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ imageIds: [redId], caption: 'csrf' }) },
      { method: 'POST', path: '/api/roots', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: outside }) },
      { method: 'DELETE', path: '/api/roots/1' },
    ];
    let refused = 0;
    for (const [name, headers] of hostileHeaders) {
      for (const t of targets) {
        const res = await send({ ...t, headers: { ...(t.headers ?? {}), ...headers } });
        expect(res.status, `${name}: ${t.method} ${t.path}`).toBe(403);
        expect((jsonOf(res.body) as { error: { code: string } }).error.code, name).toMatch(/^FORBIDDEN_(HOST|ORIGIN)$/);
        refused++;
      }
    }
    // Nothing got through: no label, no new root, the root not removed.
    expect(library.pairs.list().filter((p) => p.caption === 'csrf')).toEqual([]);
    expect(library.roots.list().map((r) => r.path)).toEqual([photos]);
    // The controls: our own names and a same-origin Origin are answered.
    for (const host of [`127.0.0.1:${server.port}`, `localhost:${server.port}`, `[::1]:${server.port}`]) {
      expect((await get('/api/status', { host })).status, host).toBe(200);
    }
    expect((await get('/api/status', { host: `localhost:${server.port}`, origin: `http://localhost:${server.port}`, 'sec-fetch-site': 'same-origin' })).status).toBe(200);
    console.log(`[hostile-paths] ${refused} foreign Host/Origin requests refused with 403`);
  });

  describe('bound beyond loopback (0.0.0.0)', () => {
    let open: RunningServer;
    let token: string;
    beforeAll(async () => {
      open = await startServer({ library, host: '0.0.0.0', port: 0 });
      token = open.token!;
    });
    afterAll(async () => {
      await open?.close();
    });
    const on = (req: RawRequest) => send(req, open.port);

    it('keeps the token in a file only its owner can read', () => {
      expect(token).toMatch(/^[\w-]{32}$/);
      const file = join(tmp, 'data', 'server-token');
      expect(readFileSync(file, 'utf8').trim()).toBe(token);
      expect(statSync(file).mode & 0o777).toBe(0o600);
    });

    it('refuses every request without the right token (401), on the API, the page, files and the event stream', async () => {
      const redId = rowOf('red.jpg')!.id;
      const paths = ['/api/status', '/', '/index.html', '/js/main.js', `/api/images/${redId}/file`, `/api/images/${redId}/thumbnail`, '/api/events', '/api/search?q=red'];
      const wrong: [string, Record<string, string>, string?][] = [
        ['no token', {}],
        ['a wrong Bearer token', { authorization: 'Bearer wrong-token-wrong-token-wrong-tok' }],
        ['a Bearer token one character short', { authorization: `Bearer ${token.slice(0, -1)}` }],
        ['a Bearer token with a character more', { authorization: `Bearer ${token}x` }],
        ['the token as Basic credentials', { authorization: `Basic ${Buffer.from(`clipdex:${token}`).toString('base64')}` }],
        ['the token without the Bearer scheme', { authorization: token }],
        ['a wrong cookie', { cookie: 'clipdex_token=wrong-token' }],
        ['the token in another cookie', { cookie: `other=${token}` }],
        ['a malformed cookie', { cookie: 'clipdex_token=%E0%A4%A' }],
        ['the token in the query of an API call', {}, `?token=${token}`],
      ];
      let refused = 0;
      for (const [name, headers, query] of wrong) {
        for (const path of paths) {
          const q = query ? (path.includes('?') ? query.replace('?', '&') : query) : '';
          if (query && !path.startsWith('/api/')) continue; // on the page the query token is the login flow below
          const res = await on({ method: 'GET', path: `${path}${q}`, headers });
          expect(res.status, `${name}: ${path}`).toBe(401);
          expect((jsonOf(res.body) as { error: { code: string } }).error.code, name).toBe('UNAUTHORIZED');
          refused++;
        }
      }
      // Writes too.
      const write = await on({ method: 'POST', path: '/api/labels', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ imageIds: [redId], caption: 'no token' }) });
      expect(write.status).toBe(401);
      expect(library.pairs.list().filter((p) => p.caption === 'no token')).toEqual([]);
      console.log(`[hostile-paths] ${refused + 1} requests without the right token refused with 401`);
    });

    it(`refuses ${STRESS ? 3_000 : 300} fuzzed Authorization and Cookie headers that do not carry the token`, async () => {
      const headerValue = fc.oneof(
        fc.stringMatching(/^[ -~]{0,120}$/),
        fc.constantFrom(token.slice(0, -1), `${token} `, `${token}\t`, token.toUpperCase(), percentEncodedOther(token), percentEncoded(token), '%', '%E0%A4%A', '=', ';;;'),
      );
      const cases = fc.sample(
        fc.tuple(fc.constantFrom('authorization', 'cookie'), fc.constantFrom('', 'Bearer ', 'bearer ', 'clipdex_token=', 'clipdex_token= ', 'a=b; clipdex_token='), headerValue),
        { numRuns: STRESS ? 3_000 : 300, seed: SEED + 1 },
      );
      // Whatever letters the token drew: its percent-encoded form is the token, one letter re-encoded is not.
      expect((await on({ method: 'GET', path: '/api/status', headers: { cookie: `clipdex_token=${percentEncoded(token)}` } })).status).toBe(200);
      expect((await on({ method: 'GET', path: '/api/status', headers: { cookie: `clipdex_token=${percentEncodedOther(token)}` } })).status).toBe(401);
      const statuses = new Map<number, number>();
      await pool(
        cases.map(([name, prefix, value]) => async () => {
          const header = `${prefix}${value}`;
          const res = await on({ method: 'GET', path: '/api/status', headers: { [name]: header } });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          // Only the exact token gets in: as a Bearer credential, or as the cookie's value once its percent-escapes
          // are decoded (RFC 6265 leaves the value's encoding to the server; the page's cookie is written encoded).
          // (Surrounding blanks are not part of a header value: Node strips them, as HTTP says.)
          const exact = name === 'authorization' ? header.startsWith('Bearer ') && header.slice(7).trim() === token : cookieCarries(header, token);
          expect(res.status, `${name}: ${JSON.stringify(header)}`).toBe(exact ? 200 : 401);
        }),
        8,
      );
      console.log(`[hostile-paths] ${cases.length} fuzzed credentials: ${[...statuses].map(([s, n]) => `${s}:${n}`).join(' ')}`);
    }, 120_000);

    it('accepts the right Bearer token, and the /?token= login sets an HttpOnly SameSite=Strict cookie that works', async () => {
      const bearer = { authorization: `Bearer ${token}` };
      expect((await on({ method: 'GET', path: '/api/status', headers: bearer })).status).toBe(200);
      expect((await on({ method: 'GET', path: `/api/images/${rowOf('red.jpg')!.id}/file`, headers: bearer })).status).toBe(200);
      // A wrong token in the login URL is refused and sets nothing.
      const bad = await on({ method: 'GET', path: '/?token=wrong' });
      expect(bad.status).toBe(401);
      expect(bad.headers['set-cookie']).toBeUndefined();
      const login = await on({ method: 'GET', path: `/?token=${encodeURIComponent(token)}` });
      expect(login.status).toBe(303);
      // Redirected to the page without the token, so it leaves the address bar and the history.
      expect(login.headers.location).toBe('/');
      const cookie = login.headers['set-cookie']?.[0] ?? '';
      expect(cookie).toMatch(/^clipdex_token=[^;]+;/);
      expect(cookie).toMatch(/;\s*HttpOnly/i);
      expect(cookie).toMatch(/;\s*SameSite=Strict/i);
      expect(cookie).toMatch(/;\s*Path=\//);
      const pair = cookie.split(';')[0]!;
      for (const path of ['/api/status', '/', `/api/images/${rowOf('red.jpg')!.id}/thumbnail`]) {
        expect((await on({ method: 'GET', path, headers: { cookie: pair } })).status, path).toBe(200);
      }
      const stream = await on({ method: 'GET', path: '/api/events', headers: { cookie: `theme=dark; ${pair}` } });
      expect(stream.status).toBe(200);
      // The token does not stand in for the Origin check: a foreign page holding it is still refused.
      expect((await on({ method: 'GET', path: '/api/status', headers: { ...bearer, origin: 'https://evil.example' } })).status).toBe(403);
    });

    it('answers any Host name when bound to every interface, and only to the token: a rebound name never has it', async () => {
      // The policy (README, Security): on 0.0.0.0 without --allowed-host the server cannot know the names it is
      // reached by (its addresses, photos.local, a proxy), so the Host is not checked and the token decides.
      const foreign = { host: 'rebound.evil.example' };
      expect((await on({ method: 'GET', path: '/api/status', headers: foreign })).status).toBe(401);
      expect((await on({ method: 'GET', path: '/api/status', headers: { ...foreign, authorization: `Bearer ${token}` } })).status).toBe(200);
      // Named hosts switch the Host check on again.
      const named = await startServer({ library, host: '0.0.0.0', port: 0, allowedHosts: ['photos.local'] });
      try {
        const bearer = { authorization: `Bearer ${named.token}` };
        expect((await send({ method: 'GET', path: '/api/status', headers: { ...foreign, ...bearer } }, named.port)).status).toBe(403);
        expect((await send({ method: 'GET', path: '/api/status', headers: { host: `photos.local:${named.port}`, ...bearer } }, named.port)).status).toBe(200);
      } finally {
        await named.close();
      }
    });

    it('redirects the /?token= login only to a path on this server, never to another site', async () => {
      const t = encodeURIComponent(token);
      for (const path of ['//evil.example/', '///evil.example/x', '/\\evil.example/', '/%2F%2Fevil.example/', '//evil.example/%2e%2e/']) {
        const res = await on({ method: 'GET', path: `${path}?token=${t}` });
        expect(res.status, path).toBe(303);
        const location = res.headers.location as string;
        // Resolved against this server, the target stays on it: one leading slash, no scheme or authority.
        expect(new URL(location, 'http://clipdex.test').host, `${path} → ${location}`).toBe('clipdex.test');
        expect(location, path).toMatch(/^\/(?![/\\])/);
      }
    });
  });
});

/** The first `clipdex_token` cookie of a Cookie header, percent-decoded, is the token (a malformed escape is no token). */
function cookieCarries(header: string, token: string): boolean {
  const part = header.split(';').map((p) => p.trim()).find((p) => p.split('=')[0] === 'clipdex_token');
  if (part === undefined) return false;
  try {
    return decodeURIComponent(part.slice('clipdex_token='.length)) === token;
  } catch {
    return false;
  }
}

/** The token with every character percent-encoded: the same token, which a cookie may carry. */
function percentEncoded(token: string): string {
  return [...Buffer.from(token)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/** The token with its first letter swapped for the percent-encoding of another letter: never the token. */
function percentEncodedOther(token: string): string {
  const at = token.search(/[A-Za-z]/);
  if (at < 0) return `%41${token}`;
  const other = token[at] === 'A' ? 'B' : 'A';
  return `${token.slice(0, at)}%${other.charCodeAt(0).toString(16).toUpperCase()}${token.slice(at + 1)}`;
}

