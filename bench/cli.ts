/**
 * npm run bench:cli — wall time of one `clipdex search` (process start to exit) with the ViT-B/32-shaped
 * self-built model, the way a user runs it from a shell (issue 19: ≤ 2 s alone, ≤ 1 s with a server running).
 *
 *   --version            start-up alone (module loading)
 *   search, local        `--local`: the library opened here, the text tower only
 *   search, server       a `clipdex serve` of the same library runs: the CLI asks it
 *   old: …               BENCH_OLD_CLI=<path to main.js of an older build>: the same commands with it, run in
 *                        the same rounds (the old CLI loads both towers and every module; it knows no server)
 *
 * Conditions alternate within each round (BENCH_ROUNDS, default 7) and the median is reported, since the
 * machine is shared and noisy: compare the ratios, not the absolute figures. The library is 24 real JPEGs
 * indexed once in bench/out/cli-library (search cost here is start-up and model loading, not the index).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { writeJpeg } from '../test/helpers/ingest-fixtures.js';
import { indexFiles } from '../test/helpers/library-fixture.js';

const OUT = resolve('bench/out');
const MODEL_DIR = join(OUT, 'vit-b-32');
const DATA_DIR = join(OUT, 'cli-library');
const CLI = resolve('dist/cli/main.js');
const OLD_CLI = process.env.BENCH_OLD_CLI ? resolve(process.env.BENCH_OLD_CLI) : null;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const sharedVocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');

async function ensureLibrary(): Promise<void> {
  if (!existsSync(join(MODEL_DIR, 'onnx', 'vision_model.onnx'))) {
    console.log('building the vit-b-32 preset model …');
    await buildTinyModel({ out: MODEL_DIR, preset: 'vit-b-32', vocab: existsSync(sharedVocab) ? sharedVocab : undefined, force: true });
  }
  if (existsSync(join(DATA_DIR, 'library.db'))) return;
  const photos = join(DATA_DIR, '..', 'cli-library-photos');
  mkdirSync(photos, { recursive: true });
  const files: string[] = [];
  for (let i = 0; i < 24; i++) {
    files.push(join(photos, `p${i}.jpg`));
    await writeJpeg(files[i]!, i + 1, 320, 240);
  }
  const library = await Library.open({ dataDir: DATA_DIR, model: MODEL_DIR });
  try {
    await indexFiles(library, photos, files);
  } finally {
    await library.close();
  }
}

function timed(cli: string, args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [cli, '--data-dir', DATA_DIR, '--model', MODEL_DIR, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`${args.join(' ')} exited ${code}: ${err}`));
      else resolvePromise(Number(process.hrtime.bigint() - started) / 1e6);
    });
  });
}

async function timedServed(cli: string, args: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  const stderr = await new Promise<string>((resolvePromise, reject) => {
    const child = spawn(process.execPath, [cli, '--data-dir', DATA_DIR, '--model', MODEL_DIR, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolvePromise(err) : reject(new Error(`${args.join(' ')} exited ${code}: ${err}`))));
  });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  // A run meant to ask the server that fell back to loading the model would be a wrong figure.
  if (!/searched by the server/.test(stderr)) throw new Error(`the server did not answer: ${stderr}`);
  return ms;
}

async function startServer(): Promise<ChildProcess> {
  const server = spawn(process.execPath, [CLI, '--data-dir', DATA_DIR, '--model', MODEL_DIR, 'serve', '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CLIPDEX_OCR: 'off' } });
  let log = '';
  server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const started = Date.now();
  while (!existsSync(join(DATA_DIR, 'server.json'))) {
    if (Date.now() - started > 120_000 || server.exitCode !== null) throw new Error(`clipdex serve did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return server;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  await ensureLibrary();
  const phrase = (i: number) => `a dog on the beach number ${i}`;
  const times = new Map<string, number[]>();
  const add = (name: string, ms: number) => times.set(name, [...(times.get(name) ?? []), ms]);
  // Warm the page cache for the model files and both builds before anything is timed.
  await timed(CLI, ['search', '--local', 'warm up']);
  if (OLD_CLI) await timed(OLD_CLI, ['search', 'warm up']);
  for (let r = 0; r < ROUNDS; r++) {
    add('--version', await timed(CLI, ['--version']));
    if (OLD_CLI) add('old: --version', await timed(OLD_CLI, ['--version']));
    add('search, local', await timed(CLI, ['search', '--local', phrase(r)]));
    if (OLD_CLI) add('old: search', await timed(OLD_CLI, ['search', phrase(r)]));
  }
  const server = await startServer();
  try {
    // Until its start-up scan is over the server may be too busy to answer the CLI's probe in time.
    for (let tries = 0; ; tries++) {
      try {
        await timedServed(CLI, ['search', 'warm up']);
        break;
      } catch (err) {
        if (tries === 30) throw err;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    for (let r = 0; r < ROUNDS; r++) add('search, server', await timedServed(CLI, ['search', phrase(100 + r)]));
  } finally {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
  console.log(`clipdex CLI wall time, vit-b-32 shapes, median of ${ROUNDS} (ms):`);
  for (const [name, xs] of times) console.log(`  ${name.padEnd(18)} ${median(xs).toFixed(0).padStart(6)}   (min ${Math.min(...xs).toFixed(0)}, max ${Math.max(...xs).toFixed(0)})`);
  const old = times.get('old: search');
  if (old) {
    console.log(`  old search / local search:  ${(median(old) / median(times.get('search, local')!)).toFixed(2)}×`);
    console.log(`  old search / server search: ${(median(old) / median(times.get('search, server')!)).toFixed(2)}×`);
  }
}

await main();
