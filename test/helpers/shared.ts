import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root (the folder holding package.json). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * `../shared` beside the project root, or null on a fresh clone without it.
 * Tests that need it skip and say so in their name.
 */
export const sharedDir: string | null = (() => {
  const dir = process.env.CLIPDEX_SHARED_DIR ?? join(projectRoot, '..', 'shared');
  return existsSync(join(dir, 'photos')) || existsSync(join(dir, 'clip')) ? dir : null;
})();

export function sharedPath(...parts: string[]): string | null {
  if (!sharedDir) return null;
  const p = join(sharedDir, ...parts);
  return existsSync(p) ? p : null;
}

export const NEEDS_SHARED = '(skipped: ../shared not found beside the project root)';
