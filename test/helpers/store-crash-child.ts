/**
 * Child process for the crash test (test/index-crash.test.ts): writes to a library and saves its index
 * in a loop until it is killed. Prints each transaction as `begin <n> <+id|-id …>` before committing and
 * `ok <n>` after, so the parent knows what was surely committed and what may or may not have been.
 *
 *   node --import tsx test/helpers/store-crash-child.ts <dataDir> <seed>
 */
import { IndexManager } from '../../src/index/index-manager.js';
import { IndexChangesRepo } from '../../src/store/index-changes-repo.js';
import { CRASH_DIM, CRASH_KEY, CRASH_OPTIONS } from './store-crash-config.js';
import { clusteredVectors, openTestLibrary, rng } from './store-fixtures.js';

const [dataDir, seedArg] = process.argv.slice(2);
const r = rng(Number(seedArg));
const lib = openTestLibrary(dataDir!);
const log = new IndexChangesRepo(lib.store.db);
const root = lib.roots.add('/crash');
const out = (line: string) => process.stdout.write(`${line}\n`);

function randomVector(): Float32Array {
  return clusteredVectors(1, CRASH_DIM, { seed: Math.floor(r() * 1e9), clusters: 4 });
}

const memberIds = () => log.memberIds(CRASH_KEY);

let txn = 0;
function transaction(describe: () => string[], write: () => void): void {
  const n = ++txn;
  const events = describe();
  out(`begin ${n} ${events.join(' ')}`);
  lib.store.db.transaction(write)();
  out(`ok ${n}`);
}

const manager = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: CRASH_KEY, ...CRASH_OPTIONS });
out('ready');
let next = (lib.store.db.prepare('SELECT coalesce(max(id), 0) AS m FROM images').get() as { m: number }).m;
const pause = () => new Promise((resolve) => setTimeout(resolve, 2 + r() * 8));
for (let step = 0; ; step++) {
  // Bursts of small transactions, then a save: kills land in commits, in replays and in worker writes.
  const op = step % 12 === 11 ? 1 : r() * 0.8;
  await pause();
  if (op < 0.45) {
    // New files, each with new content and an embedding.
    const count = 1 + Math.floor(r() * 8);
    const planned = Array.from({ length: count }, () => ({ path: `/crash/${++next}-${Math.floor(r() * 1e9)}.jpg`, vector: randomVector() }));
    transaction(
      () => planned.map((p) => `+${p.path}`),
      () => {
        for (const p of planned) {
          lib.embeddings.put(`c:${p.path}`, CRASH_KEY, p.vector);
          lib.images.upsert({ rootId: root.id, path: p.path, size: 1, mtimeMs: 1, contentHash: `c:${p.path}`, status: 'indexed' });
        }
      },
    );
  } else if (op < 0.65) {
    const ids = memberIds();
    if (ids.length === 0) continue;
    const victims = [...new Set(Array.from({ length: 1 + Math.floor(r() * 3) }, () => ids[Math.floor(r() * ids.length)]!))];
    const paths = victims.map((id) => lib.images.get(id)!.path);
    const offline = r() < 0.5;
    transaction(
      () => paths.map((p) => `-${p}`),
      () => {
        for (const id of victims) {
          if (offline) lib.images.setStatus(id, 'offline');
          else lib.images.remove(id);
        }
      },
    );
  } else if (op < 0.75) {
    // New vector for existing content (a re-encode): membership unchanged, vector changed.
    const ids = memberIds();
    if (ids.length === 0) continue;
    const img = lib.images.get(ids[Math.floor(r() * ids.length)]!)!;
    const v = randomVector();
    transaction(
      () => [`~${img.path}`],
      () => lib.embeddings.put(img.contentHash!, CRASH_KEY, v),
    );
  } else if (op < 0.8) {
    // A duplicate of an existing file: shares its content and its embedding.
    const ids = memberIds();
    if (ids.length === 0) continue;
    const img = lib.images.get(ids[Math.floor(r() * ids.length)]!)!;
    const path = `/crash/${++next}-dup.jpg`;
    transaction(
      () => [`+${path}`],
      () => lib.images.upsert({ rootId: root.id, path, size: 1, mtimeMs: 1, contentHash: img.contentHash, status: 'indexed' }),
    );
  } else {
    out('merge-start');
    await (r() < 0.2 ? manager.rebuild() : manager.merge());
    out('merge-done');
  }
  // Searches interleave with writes as in the server; their answers are checked by the parent after the kill.
  if (step % 5 === 0) await manager.search(randomVector(), 5);
}
