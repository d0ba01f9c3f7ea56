/**
 * The README is a contract: on a fresh clone its install command and its start command work exactly as
 * written, and so does installing the packed tarball globally, offline from everything but the npm
 * registry. The commands are read from the README itself, so an edit that breaks them fails here.
 *
 * Run by `npm run test:install` (and by CI): minutes of `npm ci` and `npm install -g`, so not part of
 * `npm test`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/shared.js';

const PHOTOS = 3;
const work = mkdtempSync(join(tmpdir(), 'clipdex-install-'));
const home = join(work, 'home');
const clone = join(work, 'clone');
const model = join(work, 'tiny-model');

/** The lines of the first ```sh block under the README heading that starts with `heading`. */
function readmeBlock(heading: string): string[] {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8');
  const section = readme.split(/^#{2,3} /m).find((s) => s.startsWith(heading));
  const block = section && /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  if (!block) throw new Error(`README.md has no \`\`\`sh block under "${heading}"`);
  return block.split('\n').filter((l) => l.trim() !== '');
}

/** The README line of `block` that `pattern` picks out. */
function readmeLine(block: string[], pattern: RegExp, what: string): string {
  const found = block.find((l) => pattern.test(l));
  if (!found) throw new Error(`README.md's block has no line for ${what} (${pattern})`);
  return found;
}

/** A command line as the test names it: without its comment. */
const shown = (line: string) => line.replace(/\s+#.*/, '');

const realHome = process.env.HOME ?? homedir();
/** This machine's npm config files, read where a user's npm reads them (HOME and --prefix move both). */
let npmConfigFiles: { userconfig: string; globalconfig: string };

/**
 * What a user's shell has: this machine's environment (proxies, CA certificates) and npm config, with
 * HOME a fresh folder (so `~/Pictures` is ours), and nothing of this test run (vitest's and `npm run`'s
 * variables) leaking in.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|TEST$|NODE_ENV$|INIT_CWD$|CLIPDEX_)/i.test(key)) continue;
    env[key] = value;
  }
  return {
    ...env,
    HOME: home,
    npm_config_cache: process.env.npm_config_cache ?? join(realHome, '.npm'),
    npm_config_userconfig: npmConfigFiles.userconfig,
    npm_config_globalconfig: npmConfigFiles.globalconfig,
    ...extra,
  };
}

interface Ran {
  code: number | null;
  output: string;
}

/** Runs a command line through sh, as a terminal would. */
function sh(command: string, cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => {
      output += `\n[killed after ${timeoutMs} ms]`;
      process.kill(-child.pid!, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** npm prints `npm warn …` for each warning; a clean install prints none. */
function npmWarnings(output: string): string[] {
  return output.split('\n').filter((l) => /^npm warn/i.test(l.trim()));
}

/**
 * Starts a long-running command line, waits for `clipdex: listening on URL`, and checks what a user would
 * look at: the page and /api/status, until every photo is indexed. Stops the whole process group after.
 */
async function serveAndCheck(command: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  const child = spawn('sh', ['-c', command], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let log = '';
  child.stdout.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "listening on" line within 120 s:\n${log}`)), 120_000);
      child.stderr.on('data', (c: Buffer) => {
        log += c.toString();
        const m = /listening on (http:\/\/\S+)/.exec(log);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('close', (code) => reject(new Error(`\`${command}\` exited (${code}) before listening:\n${log}`)));
    });
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>clipdex</title>');
    // Indexing runs behind the listening server: poll the status a user would watch until it is done.
    const deadline = Date.now() + 180_000;
    let status: { indexed?: number; failed?: number; model?: unknown } = {};
    while (Date.now() < deadline) {
      const res = await fetch(`${url}/api/status`);
      expect(res.status).toBe(200);
      status = (await res.json()) as typeof status;
      if (status.indexed === PHOTOS) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect({ indexed: status.indexed, failed: status.failed }, log).toEqual({ indexed: PHOTOS, failed: 0 });
  } finally {
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGTERM');
    const killer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  }
}

beforeAll(async () => {
  const config = (key: string) => execFileSync('npm', ['config', 'get', key], { encoding: 'utf8', cwd: work }).trim();
  npmConfigFiles = { userconfig: config('userconfig'), globalconfig: config('globalconfig') };
  const pictures = join(home, 'Pictures');
  await mkdir(pictures, { recursive: true });
  for (let i = 0; i < PHOTOS; i++) {
    await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 60 * i, g: 120, b: 255 - 60 * i } } })
      .jpeg()
      .toFile(join(pictures, `photo-${i}.jpg`));
  }
  const cloned = await sh(`git clone --quiet "${projectRoot}" "${clone}"`, work, userEnv(), 120_000);
  expect(cloned.code, cloned.output).toBe(0);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("the README's commands on a fresh clone", () => {
  const setup = readmeBlock('On a fresh machine');
  const install = readmeLine(setup, /#\s*install\b/, 'the install (a line commented "# install")');
  const start = readmeLine(setup, /#\s*start\b/, 'the start (a line commented "# start")');

  it(`installs with \`${shown(install)}\`, without a warning`, async () => {
    const ran = await sh(install, clone, userEnv(), 15 * 60_000);
    expect(ran.code, ran.output).toBe(0);
    expect(npmWarnings(ran.output), ran.output).toEqual([]);
    expect(existsSync(join(clone, 'dist', 'cli', 'main.js')), 'npm ci built dist/').toBe(true);
    // ONNX Runtime's own postinstall (a CUDA download from NuGet) was not run: nothing to fetch offline.
    expect(ran.output).not.toMatch(/nuget|ENOTFOUND/i);
  });

  it('builds a model with `npx clipdex models build-tiny`', async () => {
    const ran = await sh(`npx clipdex models build-tiny --out "${model}"`, clone, userEnv(), 120_000);
    expect(ran.code, ran.output).toBe(0);
    expect(existsSync(join(model, 'onnx', 'vision_model.onnx'))).toBe(true);
  });

  it(`starts with \`${shown(start)}\`: the page answers and ~/Pictures gets indexed`, async () => {
    await serveAndCheck(start, clone, userEnv({ CLIPDEX_MODEL: model, CLIPDEX_PORT: '0', CLIPDEX_DATA_DIR: join(work, 'data-clone') }));
  });
});

describe("the README's installed-package commands, run in the clone", () => {
  const block = readmeBlock('As an installed package');
  const pack = readmeLine(block, /^npm pack\b/, 'npm pack');
  const install = readmeLine(block, /^npm install -g\b/, 'npm install -g');
  const version = readmeLine(block, /^clipdex --version\b/, 'clipdex --version');
  const serve = readmeLine(block, /^clipdex serve\b/, 'clipdex serve');
  // The global prefix is ours (npm_config_prefix, as `npm config set prefix` would make it), first on PATH.
  const prefix = join(work, 'global');
  const globalEnv = (extra: Record<string, string> = {}) => userEnv({ npm_config_prefix: prefix, PATH: `${join(prefix, 'bin')}:${process.env.PATH ?? ''}`, ...extra });

  it(`packs with \`${shown(pack)}\`, leaving the clone's onnxruntime-node as it was`, async () => {
    const ortManifest = join(clone, 'node_modules', 'onnxruntime-node', 'package.json');
    const before = readFileSync(ortManifest, 'utf8');
    const ran = await sh(pack, clone, globalEnv(), 10 * 60_000);
    expect(ran.code, ran.output).toBe(0);
    expect(readdirSync(clone).filter((f) => /^clipdex-.*\.tgz$/.test(f)), ran.output).toHaveLength(1);
    // postpack put back onnxruntime-node's own package.json after bundling it without its postinstall.
    expect(readFileSync(ortManifest, 'utf8')).toBe(before);
  });

  it(`installs with \`${shown(install)}\`: no CUDA download, no warning`, async () => {
    const ran = await sh(install, clone, globalEnv(), 15 * 60_000);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output).not.toMatch(/nuget|ENOTFOUND/i);
    expect(npmWarnings(ran.output), ran.output).toEqual([]);
    expect(existsSync(join(prefix, 'bin', 'clipdex')), 'the bin landed in the global prefix').toBe(true);
  });

  it(`answers \`${shown(version)}\` from the global bin`, async () => {
    const expected = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;
    const ran = await sh(version, work, globalEnv(), 60_000);
    expect(ran.code, ran.output).toBe(0);
    expect(ran.output.trim()).toBe(expected);
  });

  it(`serves with \`${shown(serve)}\`: the page answers and ~/Pictures gets indexed`, async () => {
    await serveAndCheck(serve, work, globalEnv({ CLIPDEX_MODEL: model, CLIPDEX_PORT: '0', CLIPDEX_DATA_DIR: join(work, 'data-global') }));
  });
});
