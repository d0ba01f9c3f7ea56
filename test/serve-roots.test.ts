/**
 * `clipdex serve --root` with a folder that is not there, or is a file: a usage error (exit 2) naming the
 * path, before the server starts, instead of a server that runs on with indexing never started.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

describe('clipdex serve --root', () => {
  let tmp: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-serve-roots-'));
    // No model is needed: the folders are checked before the library opens.
    env = { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
  });
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  // Before the fix the server kept running: the short timeout kills it and the exit code is not 2.
  const serve = (root: string, json = false) => runCli(['--model', 'clip-vit-b-32', ...(json ? ['--json'] : []), 'serve', '--port', '0', '--root', root], env, 20_000);

  it('exits 2 naming a folder that does not exist, and never listens', async () => {
    const missing = join(tmp, 'no-such-folder');
    const r = await serve(missing);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`No folder at ${missing}`);
    expect(r.stderr).not.toContain('listening on');
    expect(r.stdout).toBe('');
  }, 30_000);

  it('exits 2 when the path is a file, saying so; --json puts the error on stdout', async () => {
    const file = join(tmp, 'photo.jpg');
    await writeFile(file, 'not a folder');
    const r = await serve(file, true);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file} is a file, not a folder`);
    expect(r.stderr).not.toContain('listening on');
    expect(JSON.parse(r.stdout)).toEqual({ error: { code: 'INVALID_ARGUMENT', message: `--root: ${file} is a file, not a folder` } });
  }, 30_000);
});

describe('clipdex index DIR', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-index-roots-'));
  });
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('exits 2 naming a folder that does not exist, before a library is opened (was exit 1 with a raw ENOENT)', async () => {
    const missing = join(tmp, 'no-such-folder');
    const data = join(tmp, 'data');
    const r = await runCli(['--model', 'clip-vit-b-32', 'index', missing], { CLIPDEX_DATA_DIR: data, CLIPDEX_CACHE_DIR: join(tmp, 'cache'), HF_HUB_OFFLINE: '1' }, 20_000);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`No folder at ${missing}`);
    expect(r.stderr).not.toMatch(/ENOENT/);
    expect(existsSync(data), 'no library was created for a typo').toBe(false);
  }, 30_000);
});

