/**
 * The worker part of `npm run bench:scale`: photos per second through the shared work queue with 1, 2 and 4
 * `clipdex worker` processes on one Postgres. Each run has a database of its own: `clipdex serve --no-encode`
 * scans the folder into the queue and is stopped, then the workers drain it (`--exit-when-idle --json`); the
 * rate is counted from the first photo recorded to the last, so model loading is left out. The model is the
 * tiny one (`models build-tiny`): the figure is the queue's and the database's cost per photo (claims, the
 * sink's transaction, the change log), which is what more workers contend on — not CLIP's, which is
 * bench:encode's and grows with the machines added.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { CLI } from '../test/helpers/cli.js';
import { writeJpeg } from '../test/helpers/ingest-fixtures.js';
import { startPgliteServer } from '../test/helpers/pglite-server.js';

export interface WorkerBenchOptions {
  photos: number;
  workers: readonly number[];
  dir: string;
  log: (line: string) => void;
}

export interface WorkerFigures {
  workers: number;
  photos: number;
  seconds: number;
  photosPerS: number;
}

interface Run {
  child: ChildProcess;
  /** When each photo was recorded (a worker's `indexed` lines). */
  times: number[];
  first: string | null;
  exited: Promise<number | null>;
  stderr: () => string;
}

function run(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const r: Run = { child, times: [], first: null, exited: new Promise((res) => child.once('exit', (code) => res(code))), stderr: () => stderr };
  createInterface({ input: child.stdout! }).on('line', (l) => {
    r.first ??= l;
    if (l.includes('"event":"indexed"')) r.times.push(performance.now());
  });
  return r;
}

export async function benchWorkers(o: WorkerBenchOptions): Promise<WorkerFigures[]> {
  const photos = join(o.dir, 'photos');
  const model = (await buildTinyModel({ out: join(o.dir, 'tiny-model'), seed: 3 })).dir;
  for (let i = 0; i < o.photos; i++) await writeJpeg(join(photos, `d${i % 10}`, `p${i}.jpg`), 1000 + i);
  o.log(`${o.photos} photos written`);
  const out: WorkerFigures[] = [];
  for (const count of o.workers) {
    const pg = await startPgliteServer();
    try {
      const env = (machine: string) => ({ CLIPDEX_DATA_DIR: join(o.dir, `${count}-${machine}`), CLIPDEX_DATABASE_URL: pg.url, CLIPDEX_MODEL: model, CLIPDEX_OCR: 'off' });
      const server = run(['--json', 'serve', '--port', '0', '--no-encode', '--root', photos], env('server'));
      for (;;) {
        if (server.child.exitCode !== null) throw new Error(`serve exited: ${server.stderr()}`);
        if (server.first) {
          const status = await fetch(`${(JSON.parse(server.first) as { url: string }).url}/api/status`).then((r) => r.json() as Promise<{ pending: number }>);
          if (status.pending === o.photos) break;
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      server.child.kill('SIGTERM');
      await server.exited;
      const workers = Array.from({ length: count }, (_, i) => run(['--json', 'worker', '--exit-when-idle'], env(`worker${i}`)));
      const codes = await Promise.all(workers.map((w) => w.exited));
      if (codes.some((c) => c !== 0)) throw new Error(`a worker failed: ${workers.map((w) => w.stderr()).join('\n')}`);
      const times = workers.flatMap((w) => w.times).sort((a, b) => a - b);
      if (times.length !== o.photos) throw new Error(`${times.length} photos recorded, expected ${o.photos}`);
      const seconds = (times[times.length - 1]! - times[0]!) / 1000;
      const figures = { workers: count, photos: o.photos, seconds: Number(seconds.toFixed(2)), photosPerS: Math.round((o.photos - 1) / seconds) };
      o.log(`${count} worker(s): ${JSON.stringify(figures)}`);
      out.push(figures);
    } finally {
      await pg.stop();
    }
  }
  return out;
}
