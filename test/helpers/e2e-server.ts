/**
 * End-to-end plumbing: the built `clipdex serve` started as a user would, a fixture photo folder, and
 * headless Chromium driven by playwright-core.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import sharp from 'sharp';
import type { Page } from 'playwright-core';
import { CLI } from './cli.js';
import { sharedPath } from './shared.js';

export const CHROMIUM = process.env.CLIPDEX_CHROMIUM ?? '/usr/bin/chromium';
export const HAS_CHROMIUM = existsSync(CHROMIUM);
export const NEEDS_CHROMIUM = `(skipped: no Chromium at ${CHROMIUM}; install Debian's chromium or set CLIPDEX_CHROMIUM)`;
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface ServeProcess {
  url: string;
  /** Everything the server wrote to stderr so far (its log), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** Runs `clipdex … serve --port 0 --json …` and resolves with the URL from its first stdout line. */
export async function startServe(globalArgs: string[], serveArgs: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<ServeProcess> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does it first)`);
  const child: ChildProcess = spawn(process.execPath, [CLI, ...globalArgs, '--json', 'serve', '--port', '0', ...serveArgs], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(killer);
    }
  };
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`clipdex serve printed no URL within ${timeoutMs} ms\n${stderr}`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`clipdex serve exited (${code}) before printing its URL\n${stderr}`));
    });
  }).catch(async (err) => {
    await stop();
    throw err;
  });
  const { url } = JSON.parse(first) as { url: string };
  return { url, log: () => stderr, stop };
}

/**
 * A dozen photos in `dir`: three from each labeled folder of ../shared (three of them re-encoded as JPEG so
 * the format filter has something to split), or, without ../shared, a dozen generated pictures.
 * Returns the files written, and one spare photo (not in `dir`) for the live-update check.
 */
export async function writePhotoFixture(dir: string, spareDir: string): Promise<{ files: string[]; spare: string }> {
  await mkdir(dir, { recursive: true });
  await mkdir(spareDir, { recursive: true });
  const labeled = sharedPath('photos', 'labeled');
  const files: string[] = [];
  if (labeled) {
    const jpeg = (src: string, dst: string) => sharp(src).flatten({ background: '#ffffff' }).jpeg({ quality: 90 }).toFile(dst);
    let spare = '';
    for (const label of ['fishes', 'tools', 'renewable', 'others']) {
      const names = (await readdir(join(labeled, label))).filter((n) => n.endsWith('.webp')).sort();
      for (const [i, name] of names.slice(0, 3).entries()) {
        const src = join(labeled, label, name);
        const dst = join(dir, i === 0 ? name.replace(/\.webp$/, '.jpg') : name);
        if (i === 0) await jpeg(src, dst);
        else await copyFile(src, dst);
        files.push(dst);
      }
      if (!spare && names[3]) {
        spare = join(spareDir, `new-${names[3].replace(/\.webp$/, '.jpg')}`);
        await jpeg(join(labeled, label, names[3]), spare);
      }
    }
    return { files, spare };
  }
  for (let i = 0; i < 13; i++) {
    const hue = (i * 360) / 13;
    const [r, g, b] = hslToRgb(hue, 0.65, 0.5);
    const format = i % 3 === 0 ? 'jpg' : 'png';
    const path = join(i === 12 ? spareDir : dir, `${i === 12 ? 'new-' : ''}generated-${String(i).padStart(2, '0')}.${format}`);
    const img = sharp({ create: { width: 480, height: 360, channels: 3, background: { r, g, b } } }).composite([
      { input: { create: { width: 120 + i * 10, height: 120, channels: 3, background: { r: 255 - r, g: 255 - g, b: 255 - b } } }, left: 40 + i * 8, top: 60 + i * 6 },
    ]);
    await (format === 'jpg' ? img.jpeg({ quality: 90 }) : img.png()).toFile(path);
    files.push(path);
  }
  const spare = files.pop()!;
  return { files, spare };
}

function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)))));
  return [f(0), f(8), f(4)];
}

/** A file that claims to be a JPEG and is not one: indexing must record it as failed, with a reason. */
export async function writeCorruptPhoto(path: string): Promise<void> {
  await writeFile(path, 'this is text, not a photo\n');
}

/** Polls until `probe` returns something other than undefined/false. */
export async function eventually<T>(probe: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Records what a page must never do into `problems`: console errors (failed loads aside: those are
 * checked by URL in `failedResponses`), uncaught errors, and any dialog but confirm() — an alert() would
 * be markup run as script. confirm() is answered with `dialog` (the page uses it to guard removals).
 */
export function watchPage(page: Page, problems: string[], options: { failedResponses?: string[]; dialog?: 'accept' | 'dismiss' } = {}): void {
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
  });
  const failed = options.failedResponses;
  if (failed) {
    page.on('response', (r) => {
      if (r.status() >= 400) failed.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
    });
  }
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => {
    if (d.type() !== 'confirm') problems.push(`${d.type()}: ${d.message()}`);
    void (options.dialog === 'dismiss' ? d.dismiss() : d.accept());
  });
}
