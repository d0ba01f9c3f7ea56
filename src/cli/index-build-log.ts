import type { IndexProgress } from '../index/index-manager.js';

const count = (n: number) => n.toLocaleString('en-US');

/**
 * Log lines for a full index build (at start after damage, or for a new model): it can take minutes on a big
 * library, and a server that says nothing meanwhile looks hung. One line each time another tenth of the
 * photos is in the graph and one when it is saved; merges (small, frequent, in the background) stay quiet.
 */
export function indexBuildLog(log: (line: string) => void): (progress: IndexProgress) => void {
  const shownTenth = new Map<string, number>();
  return (p) => {
    if (p.job !== 'build') return;
    if (p.phase === 'add' && p.total > 0) {
      const tenth = Math.floor((p.done / p.total) * 10);
      if (tenth <= (shownTenth.get(p.modelKey) ?? -1)) return;
      shownTenth.set(p.modelKey, tenth);
      log(`clipdex: building the search index for ${p.modelKey}: ${Math.floor((p.done / p.total) * 100)}% (${count(p.done)} of ${count(p.total)} photos)`);
    } else if (p.phase === 'write' && p.done === p.total) {
      shownTenth.delete(p.modelKey);
      log(`clipdex: search index for ${p.modelKey} built and saved`);
    }
  };
}
