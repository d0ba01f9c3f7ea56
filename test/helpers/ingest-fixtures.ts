import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';

/** Deterministic pseudo-random RGB: every seed gives a different picture, so hashes differ. */
export function noise(width: number, height: number, seed: number): Buffer {
  const out = Buffer.alloc(width * height * 3);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export async function jpegBytes(seed: number, width = 64, height = 48): Promise<Buffer> {
  return sharp(noise(width, height, seed), { raw: { width, height, channels: 3 } }).jpeg({ quality: 80 }).toBuffer();
}

/** Writes a small valid JPEG (creating folders); returns its bytes. */
export async function writeJpeg(path: string, seed: number, width = 64, height = 48): Promise<Buffer> {
  const bytes = await jpegBytes(seed, width, height);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, bytes);
  return bytes;
}

/**
 * Polls until `probe` returns a value that is not undefined/false, or fails after `timeoutMs`.
 * Used instead of fixed sleeps: fast when the machine is idle, tolerant when it is loaded.
 */
export async function waitFor<T>(
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export const IS_ROOT = process.getuid?.() === 0;

/**
 * Runs `fn` with permission checks in force. Root bypasses file modes, so as root the effective
 * uid/gid switch to nobody for the duration (the real uid stays root, which lets us switch back);
 * vitest runs each test file in its own process, so nothing else shares the switch.
 */
export async function withoutRootPowers<T>(fn: () => Promise<T>): Promise<T> {
  if (!IS_ROOT || !process.seteuid || !process.setegid) return fn();
  process.setegid(65534);
  process.seteuid(65534);
  try {
    return await fn();
  } finally {
    process.seteuid(0);
    process.setegid(0);
  }
}
