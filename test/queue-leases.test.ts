/**
 * Claims on a shared work queue (issue 14): several processes take files from one Postgres queue. Two
 * claimants on two connections never get the same file; a result is written only by the claim's holder; a
 * lease that runs out (a killed worker) lets another take the file, and then the first one's late result is
 * refused; given-back claims and skipped roots go to the others. The Postgres is real (PGlite + pgvector over
 * the wire protocol); the leases are timed by its clock. Path mapping (a worker's --path-map) is pure.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestStore } from '../src/ingest/ingest-store.js';
import { PathMap, parsePathMapping } from '../src/ingest/path-map.js';
import { QueueClaims } from '../src/ingest/queue-claims.js';
import { openPostgresDatabase } from '../src/store/pg/pg-database.js';
import { QueueLeasesRepo, queueClaimants } from '../src/store/queue-leases-repo.js';
import { RootsRepo } from '../src/store/roots-repo.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

let server: PgliteServer;
let a: ReturnType<typeof openPostgresDatabase>;
let b: ReturnType<typeof openPostgresDatabase>;

beforeAll(async () => {
  server = await startPgliteServer();
  a = openPostgresDatabase(server.url);
  b = openPostgresDatabase(server.url);
}, 90_000);

afterAll(async () => {
  a?.close();
  b?.close();
  await server?.stop();
});

/** A fresh root with `n` queued files, on connection `a`. */
function queueFiles(prefix: string, n: number): { rootId: number; ids: number[] } {
  const root = new RootsRepo(a.db).add(prefix);
  const store = new IngestStore(a.db);
  store.transaction(() => {
    for (let i = 0; i < n; i++) store.enqueue(`${prefix}/p${String(i).padStart(3, '0')}.jpg`, root.id, 1000 + i, 1_700_000_000_000);
  });
  const ids = new IngestStore(a.db).queuePage(0, 10_000).filter((e) => e.rootId === root.id).map((e) => e.id);
  return { rootId: root.id, ids };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('queue leases on Postgres', () => {
  it('refuses the embedded backend, which has one process', async () => {
    const { default: Database } = await import('better-sqlite3');
    const db = new Database(':memory:');
    expect(() => new QueueLeasesRepo(db)).toThrow(/Postgres/);
    expect(queueClaimants(db)).toEqual([]);
    db.close();
  });

  it('hands each file to one claimant, in queue order, and only its holder can take it off the queue', () => {
    const { ids } = queueFiles('/leases/one', 30);
    const ra = new QueueLeasesRepo(a.db);
    const rb = new QueueLeasesRepo(b.db);
    const first = ra.claim('A', 0, 10, 60_000);
    const second = rb.claim('B', 0, 10, 60_000);
    expect(first.map((e) => e.id)).toEqual(ids.slice(0, 10));
    expect(second.map((e) => e.id)).toEqual(ids.slice(10, 20));
    // A asks again from the start: its own claims come back (in flight there), B's do not.
    expect(ra.claim('A', 0, 30, 60_000).map((e) => e.id)).toEqual([...ids.slice(0, 10), ...ids.slice(20, 30)]);
    expect(rb.removeOwned(first[0]!.id, 'B')).toBe(false);
    expect(ra.removeOwned(first[0]!.id, 'A')).toBe(true);
    expect(ra.removeOwned(first[0]!.id, 'A')).toBe(false);
    const who = ra.claimants();
    expect(who).toEqual(expect.arrayContaining([{ claimant: 'A', files: 19 }, { claimant: 'B', files: 10 }]));
    expect(ra.releaseAll('A')).toBe(19);
    expect(rb.releaseAll('B')).toBe(10);
  });

  it("lets another claimant take a file whose lease ran out, and then refuses the first one's late result", async () => {
    const { ids } = queueFiles('/leases/two', 3);
    const ra = new QueueLeasesRepo(a.db);
    const rb = new QueueLeasesRepo(b.db);
    const afterId = ids[0]! - 1;
    expect(ra.claim('A', afterId, 3, 300).map((e) => e.id)).toEqual(ids);
    expect(rb.claim('B', afterId, 3, 60_000)).toEqual([]);
    await sleep(600);
    expect(rb.claim('B', afterId, 3, 60_000).map((e) => e.id)).toEqual(ids);
    expect(ra.removeOwned(ids[0]!, 'A')).toBe(false);
    expect(rb.removeOwned(ids[0]!, 'B')).toBe(true);
    // A renewing now renews nothing: it holds none of them any more.
    expect(ra.renew('A', 60_000)).toBe(0);
    rb.releaseAll('B');
  });

  it('keeps claims alive with a heartbeat, gives them back at close, and leaves a skipped root to others', async () => {
    const { rootId, ids } = queueFiles('/leases/three', 4);
    const afterId = ids[0]! - 1;
    const claims = new QueueClaims(new QueueLeasesRepo(a.db), { claimant: 'beating', leaseMs: 1200 });
    expect(claims.claimPage(afterId, 2).map((e) => e.id)).toEqual(ids.slice(0, 2));
    // Three leases' worth of time: the heartbeat (every 400 ms) keeps them.
    await sleep(3000);
    const rb = new QueueLeasesRepo(b.db);
    expect(rb.claim('B', afterId, 2, 60_000).map((e) => e.id)).toEqual(ids.slice(2, 4));
    expect(rb.releaseAll('B')).toBe(2);
    // This process cannot read the root: its claim goes back and it asks for none of that root's files.
    claims.skipRoot(rootId);
    claims.giveBack(ids[0]!);
    expect(claims.claimPage(afterId, 10)).toEqual([]);
    expect(rb.claim('B', afterId, 1, 60_000).map((e) => e.id)).toEqual([ids[0]]);
    claims.close();
    // Given back at close: B takes the rest at once, not after a lease (and still holds the first).
    expect(rb.claim('B', afterId, 10, 60_000).map((e) => e.id)).toEqual(ids);
    rb.releaseAll('B');
  });

  it('never hands one file to two claimants racing on separate connections', async () => {
    const { ids } = queueFiles('/leases/race', 200);
    const afterId = ids[0]! - 1;
    const ra = new QueueLeasesRepo(a.db);
    const rb = new QueueLeasesRepo(b.db);
    const got = { A: [] as number[], B: [] as number[] };
    // Each pages on from its last claim, as the IngestQueue's cursor does.
    const cursor = { A: afterId, B: afterId };
    for (let round = 0; round < 20; round++) {
      for (const [who, repo] of [['A', ra], ['B', rb]] as const) {
        const page = repo.claim(who, cursor[who], 7, 60_000).map((e) => e.id);
        if (page.length > 0) cursor[who] = page[page.length - 1]!;
        got[who].push(...page);
      }
    }
    expect(got.A.filter((id) => got.B.includes(id))).toEqual([]);
    expect([...got.A, ...got.B].sort((x, y) => x - y)).toEqual(ids);
    ra.releaseAll('A');
    rb.releaseAll('B');
  });
});

describe('path maps', () => {
  it('reads a library path where this machine mounts it, the longest prefix first, raw bytes kept', () => {
    const map = new PathMap([parsePathMapping('/srv/photos=/mnt/nas/photos/'), parsePathMapping('/srv/photos/family=/home/me/Family')]);
    expect(map.local({ path: '/srv/photos/2019/a.jpg', pathBytes: null })).toBe('/mnt/nas/photos/2019/a.jpg');
    expect(map.local({ path: '/srv/photos/family/b.jpg', pathBytes: null })).toBe('/home/me/Family/b.jpg');
    // Not under a mapped folder (a sibling with the same prefix text included): read as it is.
    expect(map.local({ path: '/srv/photos2/c.jpg', pathBytes: null })).toBe('/srv/photos2/c.jpg');
    const raw = Buffer.concat([Buffer.from('/srv/photos/caf'), Buffer.from([0xe9]), Buffer.from('.jpg')]);
    const local = map.local({ path: '/srv/photos/café.jpg', pathBytes: raw });
    expect(Buffer.isBuffer(local) && local.equals(Buffer.concat([Buffer.from('/mnt/nas/photos/caf'), Buffer.from([0xe9]), Buffer.from('.jpg')]))).toBe(true);
    expect(map.localDir('/srv/photos')).toBe('/mnt/nas/photos');
    expect(() => parsePathMapping('photos=/mnt')).toThrow(/absolute/);
    expect(() => parsePathMapping('/srv/photos')).toThrow(/LIBRARY_PATH=LOCAL_PATH/);
  });
});
