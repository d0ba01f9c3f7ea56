/**
 * Which build of hnswlib-node's addon to use: clipdex's own (scripts/build-hnswlib.mjs: compiled for the
 * installing CPU's SIMD, with patches to hnswlib's loader and allocator) where it was built for this
 * hnswlib-node and this CPU has every feature it needs; the stock build otherwise. Both read and write the
 * same index files. `CLIPDEX_HNSWLIB=stock` forces the stock build (benchmarks compare the two with it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join } from 'node:path';
import { errorMessage } from '../errors.js';

export type Hnswlib = typeof import('hnswlib-node');

export interface TunedManifest {
  hnswlibNode: string;
  arch: string;
  platform: string;
  requires: string[];
  cxxflags: string[];
  patches: string[];
  /** addPoint and searchKnn accept a Float32Array (copied in one go instead of 512 N-API reads). */
  float32Input?: boolean;
  addon: string;
}

export interface HnswlibBuild {
  kind: 'clipdex' | 'stock';
  /** hnswlib-node's version. */
  version: string;
  /** CPU features the build was compiled for (empty for the stock build). */
  features: string[];
  /** Why the stock build is used, where clipdex's was not. */
  reason: string | null;
  /** Vectors may be passed as Float32Array (the stock build takes number[] only). */
  float32Input: boolean;
}

/** The decision alone, from what was found on disk and in the CPU: the part worth testing. */
export function chooseHnswlibBuild(input: {
  manifest: TunedManifest | null;
  installedVersion: string;
  cpuFlags: ReadonlySet<string> | null;
  arch: string;
  platform: string;
  forceStock?: boolean;
}): { use: 'clipdex' | 'stock'; reason: string | null } {
  const m = input.manifest;
  if (input.forceStock) return { use: 'stock', reason: 'CLIPDEX_HNSWLIB=stock' };
  if (m === null) return { use: 'stock', reason: 'clipdex\u2019s build of hnswlib is not installed (run `npm run build:hnswlib`)' };
  if (m.hnswlibNode !== input.installedVersion) {
    return { use: 'stock', reason: `clipdex\u2019s hnswlib build is for hnswlib-node ${m.hnswlibNode}, ${input.installedVersion} is installed` };
  }
  if (m.arch !== input.arch || m.platform !== input.platform) {
    return { use: 'stock', reason: `clipdex\u2019s hnswlib build is for ${m.platform}-${m.arch}` };
  }
  const missing = m.requires.filter((f) => !input.cpuFlags?.has(f));
  if (missing.length > 0) {
    return { use: 'stock', reason: `this CPU lacks ${missing.join(', ')}, which clipdex\u2019s hnswlib build was compiled for` };
  }
  return { use: 'clipdex', reason: null };
}

function linuxCpuFlags(): Set<string> | null {
  if (platform() !== 'linux') return null;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return line ? new Set(line.split(':')[1]!.trim().split(/\s+/)) : null;
  } catch {
    return null;
  }
}

function readManifest(dir: string): TunedManifest | null {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) return null;
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as TunedManifest;
    return typeof m.hnswlibNode === 'string' && Array.isArray(m.requires) && typeof m.addon === 'string' ? m : null;
  } catch {
    return null;
  }
}

function load(): { lib: Hnswlib; build: HnswlibBuild } {
  const require = createRequire(import.meta.url);
  const stockDir = dirname(require.resolve('hnswlib-node/package.json'));
  const version = (JSON.parse(readFileSync(join(stockDir, 'package.json'), 'utf8')) as { version: string }).version;
  const tunedDir = join(dirname(stockDir), '.clipdex-hnswlib');
  const manifest = readManifest(tunedDir);
  const choice = chooseHnswlibBuild({
    manifest,
    installedVersion: version,
    cpuFlags: linuxCpuFlags(),
    arch: arch(),
    platform: platform(),
    forceStock: process.env.CLIPDEX_HNSWLIB === 'stock',
  });
  let reason = choice.reason;
  if (choice.use === 'clipdex' && manifest) {
    try {
      const lib = require(join(tunedDir, manifest.addon)) as Hnswlib;
      return { lib, build: { kind: 'clipdex', version, features: manifest.requires, reason: null, float32Input: manifest.float32Input === true } };
    } catch (err) {
      reason = `clipdex\u2019s hnswlib build does not load: ${errorMessage(err)}`;
    }
  }
  return { lib: require('hnswlib-node') as Hnswlib, build: { kind: 'stock', version, features: [], reason, float32Input: false } };
}

const loaded = load();

/** hnswlib-node's API, from whichever build was chosen at start-up. */
export const hnswlib: Hnswlib = loaded.lib;

/** Which build that is, for `clipdex status` and the benchmarks. */
export const hnswlibBuild: HnswlibBuild = loaded.build;
