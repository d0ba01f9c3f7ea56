/**
 * Crash safety: a child process writes to a library and saves its index in a loop and is killed with
 * SIGKILL at random moments, over and over on the same library. After every kill the library is reopened
 * here and must be consistent: every acknowledged transaction present, the one in flight all-or-nothing,
 * and the index holding exactly SQLite's members with SQLite's vectors (nothing lost, nothing duplicated,
 * no ghost deletions).
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyDir } from '../src/index/index-files.js';
import { IndexManager } from '../src/index/index-manager.js';
import { IndexChangesRepo } from '../src/store/index-changes-repo.js';
import { blobToVector } from '../src/store/vector-blob.js';
import { CRASH_DIM, CRASH_KEY, CRASH_OPTIONS } from './helpers/store-crash-config.js';
import { openTestLibrary, rng, tempLibraryDir } from './helpers/store-fixtures.js';
import { projectRoot } from './helpers/shared.js';

// 16 in CI (20 minutes on 2 cores for the whole suite); STRESS=1 for a long run.
const KILLS = process.env.STRESS === '1' ? 100 : 16;
const CHILD = join(projectRoot, 'test', 'helpers', 'store-crash-child.ts');

interface ChildRun {
  lines: string[];
  sawReady: boolean;
}

function runAndKill(dataDir: string, seed: number, pickDelay: () => number, waitForReady: boolean): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, String(seed)], { cwd: projectRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let killTimer: NodeJS.Timeout | undefined;
    const arm = () => {
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), pickDelay());
    };
    const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (waitForReady && out.includes('ready\n')) arm();
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    if (!waitForReady) arm();
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      clearTimeout(killTimer);
      if (signal !== 'SIGKILL') reject(new Error(`child exited by itself (code ${code}, signal ${signal}): ${err.slice(-2000)}`));
      else resolve({ lines: out.split('\n').filter(Boolean), sawReady: out.includes('ready\n') });
    });
  });
}

/** Applies a transaction's events (+path added, -path removed, ~path re-encoded) to a set of member paths. */
function apply(set: Set<string>, events: string[]): Set<string> {
  const next = new Set(set);
  for (const e of events) {
    if (e.startsWith('+')) next.add(e.slice(1));
    else if (e.startsWith('-')) next.delete(e.slice(1));
  }
  return next;
}

describe('crash safety', () => {
  it(`SIGKILLed ${KILLS} times while writing and saving, the library reopens consistent every time`, { timeout: process.env.STRESS === '1' ? 1_200_000 : 240_000 }, async () => {
    const { dir, cleanup } = tempLibraryDir('clipdex-crash-');
    const r = rng(42);
    let expected = new Set<string>();
    const stats = { killedInMerge: 0, merges: 0, transactions: 0, uncertainCommitted: 0, uncertainRolledBack: 0, beforeReady: 0 };
    try {
      for (let i = 0; i < KILLS; i++) {
        const early = i % 5 === 4; // some kills land during open (load, replay, rebuild)
        const run = await runAndKill(dir, 1000 + i, () => (early ? 150 + r() * 1200 : 30 + r() * 1500), !early);
        if (!run.sawReady) stats.beforeReady++;
        if (run.lines.at(-1) === 'merge-start') stats.killedInMerge++;
        stats.merges += run.lines.filter((l) => l === 'merge-done').length;

        // What the child surely committed, and what it may have.
        let pending: string[] | null = null;
        for (const line of run.lines) {
          const [word, , ...events] = line.split(' ');
          if (word === 'begin') pending = events;
          else if (word === 'ok') {
            expected = apply(expected, pending!);
            pending = null;
            stats.transactions++;
          }
        }

        const lib = openTestLibrary(dir);
        try {
          const rows = lib.store.db
            .prepare(`SELECT i.path FROM index_members m JOIN images i ON i.id = m.image_id WHERE m.model_key = ?`)
            .all(CRASH_KEY) as { path: string }[];
          const actual = new Set(rows.map((x) => x.path));
          const same = (a: Set<string>, b: Set<string>) => a.size === b.size && [...a].every((p) => b.has(p));
          if (pending && !same(actual, expected)) {
            // The transaction in flight at the kill: it must have committed whole.
            expected = apply(expected, pending);
            stats.uncertainCommitted++;
          } else if (pending) stats.uncertainRolledBack++;
          expect([...actual].sort()).toEqual([...expected].sort());

          const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: CRASH_KEY, ...CRASH_OPTIONS });
          try {
            const log = new IndexChangesRepo(lib.store.db);
            const members = [...log.members(CRASH_KEY)];
            const { ids, duplicated } = m.contents();
            expect(duplicated).toEqual([]);
            expect(ids).toEqual(members.map((x) => x.imageId));
            for (const member of members) {
              const v = blobToVector(member.vector, CRASH_DIM);
              const norm = Math.hypot(...v);
              const held = m.vectorOf(member.imageId)!;
              v.forEach((x, j) => expect(held[j]).toBeCloseTo(x / norm, 5));
            }
            // Leftovers of killed writes (temporary graph files, superseded graphs) are gone.
            // (A child killed before its first index write leaves no folder at all.)
            const dir = keyDir(lib.indexDir, CRASH_KEY);
            const files = existsSync(dir) ? readdirSync(dir) : [];
            const state = m.health().engine === 'hnsw' ? JSON.parse(readFileSync(join(keyDir(lib.indexDir, CRASH_KEY), 'state.json'), 'utf8')) : null;
            expect(files.sort()).toEqual(state ? ['state.json', state.file].sort() : []);
            // Searching with a member's own vector finds it (or a duplicate with the same content) first.
            const memberSet = new Set(ids);
            for (const member of members.slice(0, 10)) {
              const hits = await m.search(blobToVector(member.vector, CRASH_DIM), 3);
              expect(hits[0]!.score).toBeGreaterThan(0.9999);
              expect(hits.every((h) => memberSet.has(h.id))).toBe(true);
            }
          } finally {
            await m.close();
          }
        } finally {
          lib.close();
        }
      }
      console.log(`crash test: ${KILLS} kills, ${JSON.stringify(stats)}, ${expected.size} members at the end`);
      expect(stats.transactions).toBeGreaterThan(KILLS);
      expect(stats.merges).toBeGreaterThan(0);
      expect(stats.killedInMerge).toBeGreaterThan(0);
      expect(expected.size).toBeGreaterThan(CRASH_OPTIONS.exactBelow!); // the HNSW path was exercised
    } finally {
      cleanup();
    }
  });
});
