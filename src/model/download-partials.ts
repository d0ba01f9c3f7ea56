/**
 * Partial downloads and who owns them: `<file>.partial` rests unowned; `<file>.partial-<pid>` belongs to a
 * running process. A pull adopts a resting partial, or one whose owner is dead, by an atomic rename.
 */
import type { Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';


export function restingPartial(finalPath: string): string {
  return `${finalPath}.partial`;
}

export function workingPartial(finalPath: string): string {
  return `${finalPath}.partial-${process.pid}`;
}

/** Takes over the best partial nobody alive holds by renaming it to `work`; returns its size (0: none). */
export async function claimPartial(finalPath: string, work: string): Promise<number> {
  // Ours already: a same-process attempt that could not rest it (same-process pulls are serialised).
  const own = await sizeIfFile(work);
  if (own !== undefined) return own;
  if (await renameIfPresent(restingPartial(finalPath), work)) return (await sizeIfFile(work)) ?? 0;
  const orphans = await deadOwnersPartials(finalPath);
  orphans.sort((a, b) => b.size - a.size);
  for (const orphan of orphans) {
    if (await renameIfPresent(orphan.path, work)) return (await sizeIfFile(work)) ?? 0;
  }
  return 0;
}

async function deadOwnersPartials(finalPath: string): Promise<{ path: string; size: number }[]> {
  const dir = dirname(finalPath);
  const prefix = `${basename(finalPath)}.partial-`;
  const names = await readdir(dir).catch(() => [] as string[]);
  const found: { path: string; size: number }[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pidText = name.slice(prefix.length);
    if (!/^\d+$/.test(pidText)) continue;
    const pid = Number(pidText);
    if (pid === process.pid || isAlive(pid)) continue;
    const size = await sizeIfFile(join(dir, name));
    if (size !== undefined) found.push({ path: join(dir, name), size });
  }
  return found;
}

/** Once the file is in place, partials of it that nobody can use any more only waste disk. */
export async function removeLeftoverPartials(finalPath: string): Promise<void> {
  await rm(restingPartial(finalPath), { force: true });
  for (const orphan of await deadOwnersPartials(finalPath)) await rm(orphan.path, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function renameIfPresent(from: string, to: string): Promise<boolean> {
  try {
    await rename(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

export async function sizeIfFile(path: string): Promise<number | undefined> {
  const st = await stat(path).catch(() => null);
  return st?.isFile() ? st.size : undefined;
}

export async function hashFile(hash: Hash, path: string, length?: number): Promise<string> {
  if (length === 0) return hash.copy().digest('hex');
  const stream = createReadStream(path, length === undefined ? {} : { start: 0, end: length - 1 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.copy().digest('hex');
}

const inProcessLocks = new Map<string, Promise<unknown>>();

/** Serialises pulls of one file within this process, since they would share one working partial. */
export async function withInProcessLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const previous = inProcessLocks.get(key) ?? Promise.resolve();
  const run = previous.catch(() => undefined).then(fn);
  const tail = run.catch(() => undefined);
  inProcessLocks.set(key, tail);
  try {
    return await run;
  } finally {
    if (inProcessLocks.get(key) === tail) inProcessLocks.delete(key);
  }
}
