/** Shared by the crash test and its child process. */
import type { IndexManagerOptions } from '../../src/index/index-manager.js';

export const CRASH_DIM = 16;
export const CRASH_KEY = 'crash-16';
/** Small thresholds so the child works on the HNSW path (graph + delta + merges) almost at once. */
export const CRASH_OPTIONS: Partial<IndexManagerOptions> = {
  exactBelow: 30,
  mergeAbove: 10,
  recallQueries: 20,
  autoMerge: false,
};
