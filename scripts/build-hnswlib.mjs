// Builds clipdex's own copy of hnswlib-node's addon next to the stock one: the same sources, compiled for
// the SIMD this CPU has (hnswlib picks AVX/AVX-512 distance kernels only when compiled with them; the stock
// build gets SSE) and with small patches (see PATCHES) to hnswlib's loader and allocator and to the
// addon's argument reading. Measured at 1M × 512 (BENCHMARKS.md): searches ~1.6× faster, opens ~1.5× faster.
//
// The stock build stays in place: src/index/hnswlib-binding.ts loads this one only where its manifest
// matches the installed hnswlib-node and the running CPU has every feature it was compiled for, so a
// node_modules copied to an older machine falls back instead of dying of SIGILL. Never fails the install.
//
//   node scripts/build-hnswlib.mjs            (run by postinstall; again by hand after changing CPUs)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, cpus, platform } from 'node:os';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** Folder name of the build, a sibling of hnswlib-node in the same node_modules. */
const TUNED_DIR_NAME = '.clipdex-hnswlib';

/**
 * Each patch: the exact text of hnswlib-node 3.0's sources (hnswlib 0.8 inside), how many times it occurs,
 * and its replacement. If any text is not found that many times the sources have changed and nothing is
 * built: the stock addon is used.
 */
const PATCHES = [
  {
    why: 'huge pages for the base layer: 2 MB pages cut TLB misses on the GB-sized block searches read at random (~1.3× faster at 1M)',
    file: 'src/hnswlib/hnswalg.h',
    find: '#include <memory>\n',
    replace: `#include <memory>
#if defined(__linux__)
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cerrno>
#include <chrono>
#include <thread>
#endif

namespace clipdex {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
constexpr size_t kHugePage = size_t(1) << 21;

// 2 MB-aligned so every part of the block can live on huge pages; \`huge\` asks for them at once (a build
// faults the block in over minutes, so the cost of finding free 2 MB blocks is spread out).
inline char *allocBaseLayer(size_t bytes, bool huge) {
    void *p = nullptr;
    if (bytes >= kHugePage && posix_memalign(&p, kHugePage, bytes) == 0) {
        if (huge) madvise(p, bytes, MADV_HUGEPAGE);
        return (char *) p;
    }
    return (char *) malloc(bytes);
}

inline void adviseHugePages(char *p, size_t bytes) {
    uintptr_t start = ((uintptr_t) p + 4095) & ~uintptr_t(4095);
    uintptr_t end = ((uintptr_t) p + bytes) & ~uintptr_t(4095);
    if (end > start) madvise((void *) start, end - start, MADV_HUGEPAGE);
}

// A loaded index is read on small pages (asking for 2 MB pages while reading a file of GBs stalled the
// load for seconds) and then moved onto huge pages by a background thread (MADV_COLLAPSE, Linux 6.1+;
// older kernels leave it to khugepaged). Addresses and contents stay the same, so searches go on during
// it, and it is harmless if the block is freed meanwhile. One page at a time, at the lowest priority and
// with a pause after each: each collapse briefly locks the process's page tables, and done in one go it
// made the rest of the open (and every page fault in the process) several times slower on 2 cores.
inline void collapseInBackground(char *p, size_t bytes) {
    adviseHugePages(p, bytes);
    std::thread([p, bytes]() {
        setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), 19);
        uintptr_t start = ((uintptr_t) p + kHugePage - 1) & ~(kHugePage - 1);
        uintptr_t end = ((uintptr_t) p + bytes) & ~(kHugePage - 1);
        for (uintptr_t at = start; at < end; at += kHugePage) {
            if (madvise((void *) at, kHugePage, MADV_COLLAPSE) != 0 && errno != EAGAIN) break;
            std::this_thread::sleep_for(std::chrono::microseconds(500));
        }
    }).detach();
}
#else
inline char *allocBaseLayer(size_t bytes, bool) { return (char *) malloc(bytes); }
inline void adviseHugePages(char *, size_t) {}
inline void collapseInBackground(char *, size_t) {}
#endif
}  // namespace clipdex
`,
  },
  {
    why: 'a new index allocates its base layer on huge pages',
    file: 'src/hnswlib/hnswalg.h',
    find: 'data_level0_memory_ = (char *) malloc(max_elements_ * size_data_per_element_);',
    replace: 'data_level0_memory_ = clipdex::allocBaseLayer(max_elements_ * size_data_per_element_, true);',
  },
  {
    why: 'a grown index keeps its base layer on huge pages',
    file: 'src/hnswlib/hnswalg.h',
    find: '        data_level0_memory_ = data_level0_memory_new;\n',
    replace: '        data_level0_memory_ = data_level0_memory_new;\n        clipdex::adviseHugePages(data_level0_memory_, new_max_elements * size_data_per_element_);\n',
  },
  {
    why: 'a loaded index: aligned block, collapsed onto huge pages after the load',
    file: 'src/hnswlib/hnswalg.h',
    find: 'data_level0_memory_ = (char *) malloc(max_elements * size_data_per_element_);',
    replace: 'data_level0_memory_ = clipdex::allocBaseLayer(max_elements * size_data_per_element_, false);',
  },
  {
    why: 'start the collapse once the load is complete',
    file: 'src/hnswlib/hnswalg.h',
    find: '        input.close();\n\n        return;\n    }',
    replace: '        input.close();\n        clipdex::collapseInBackground(data_level0_memory_, max_elements * size_data_per_element_);\n\n        return;\n    }',
  },
  {
    why: "loadIndex's file check asked the stream for its position twice per element (an lseek each: 2M system calls, ~0.8 s at 1M); the position is now counted",
    file: 'src/hnswlib/hnswalg.h',
    find: `        for (size_t i = 0; i < cur_element_count; i++) {
            if (input.tellg() < 0 || input.tellg() >= total_filesize) {
                throw std::runtime_error("Index seems to be corrupted or unsupported");
            }

            unsigned int linkListSize;
            readBinaryPOD(input, linkListSize);
            if (linkListSize != 0) {
                input.seekg(linkListSize, input.cur);
            }
        }`,
    replace: `        std::streamoff position = input.tellg();
        for (size_t i = 0; i < cur_element_count; i++) {
            if (!input || position < 0 || position >= (std::streamoff) total_filesize) {
                throw std::runtime_error("Index seems to be corrupted or unsupported");
            }

            unsigned int linkListSize;
            readBinaryPOD(input, linkListSize);
            position += sizeof(linkListSize);
            if (linkListSize != 0) {
                input.seekg(linkListSize, input.cur);
                position += linkListSize;
            }
        }`,
  },
  {
    why: "addPoint and searchKnn take a Float32Array as well as an Array: reading 512 numbers one by one through N-API cost ~35 µs a call (5% of a search at 1M, 6% of a build)",
    file: 'src/addon.cc',
    find: '#include "hnswlib/hnswlib.h"\n',
    replace: `#include "hnswlib/hnswlib.h"
#include <cstring>

namespace clipdex {
inline bool isFloat32Array(const Napi::Value& v) {
  return v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float32_array;
}
}  // namespace clipdex
`,
  },
  {
    why: 'the argument check lets a Float32Array through (addPoint and searchKnn of both index classes)',
    file: 'src/addon.cc',
    count: 4,
    find: `    if (!info[0].IsArray()) {
      Napi::TypeError::New(env, "Invalid the first argument type, must be an Array.").ThrowAsJavaScriptException();
      return env.Null();
    }
    if (!info[1].IsNumber()) {`,
    replace: `    if (!info[0].IsArray() && !clipdex::isFloat32Array(info[0])) {
      Napi::TypeError::New(env, "Invalid the first argument type, must be an Array or a Float32Array.").ThrowAsJavaScriptException();
      return env.Null();
    }
    if (!info[1].IsNumber()) {`,
  },
  {
    why: 'its length is checked the same way',
    file: 'src/addon.cc',
    count: 4,
    find: `    Napi::Array arr = info[0].As<Napi::Array>();
    if (arr.Length() != dim_) {
      Napi::Error::New(env, "Invalid the given array length (expected " + std::to_string(dim_) + ", but got " +
                              std::to_string(arr.Length()) + ").")`,
    replace: `    const bool typed = clipdex::isFloat32Array(info[0]);
    Napi::Array arr = typed ? Napi::Array::New(env, 0) : info[0].As<Napi::Array>();
    const size_t length = typed ? info[0].As<Napi::Float32Array>().ElementLength() : arr.Length();
    if (length != dim_) {
      Napi::Error::New(env, "Invalid the given array length (expected " + std::to_string(dim_) + ", but got " +
                              std::to_string(length) + ").")`,
  },
  {
    why: 'and copied in one go',
    file: 'src/addon.cc',
    count: 4,
    find: `    std::vector<float> vec(dim_, 0.0);
    for (uint32_t i = 0; i < dim_; i++) {
      Napi::Value val = arr[i];
      vec[i] = val.As<Napi::Number>().FloatValue();
    }`,
    replace: `    std::vector<float> vec(dim_, 0.0);
    if (typed) {
      std::memcpy(vec.data(), info[0].As<Napi::Float32Array>().Data(), dim_ * sizeof(float));
    } else {
      for (uint32_t i = 0; i < dim_; i++) {
        Napi::Value val = arr[i];
        vec[i] = val.As<Napi::Number>().FloatValue();
      }
    }`,
  },
];

/** CPU features the compiler may use, as /proc/cpuinfo names them, with their flags. */
const X64_FEATURES = [
  { feature: 'avx2', flags: ['-mavx2'] },
  { feature: 'fma', flags: ['-mfma'] },
  { feature: 'avx512f', flags: ['-mavx512f'] },
];

function cpuFlags() {
  if (platform() !== 'linux') return null;
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return line ? new Set(line.split(':')[1].trim().split(/\s+/)) : null;
  } catch {
    return null;
  }
}

/** What to compile for on this machine: x64 Linux gets the SIMD it has; elsewhere the patches alone. */
function targetFor(flags) {
  if (arch() !== 'x64' || flags === null) return { requires: [], cxxflags: ['-O3'] };
  // AVX-512 only on top of AVX2 + FMA (hnswlib's AVX-512 kernels are compiled inside its AVX branch).
  const have = X64_FEATURES.filter((f) => flags.has(f.feature));
  const base = have.filter((f) => f.feature !== 'avx512f');
  const chosen = base.length === 2 ? have : [];
  return { requires: chosen.map((f) => f.feature), cxxflags: ['-O3', ...chosen.flatMap((f) => f.flags)] };
}

function nodeGypScript() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    /* not installed locally */
  }
  return candidates.find((c) => c && existsSync(c)) ?? null;
}

function build() {
  if (process.env.CLIPDEX_HNSWLIB === 'stock') return 'CLIPDEX_HNSWLIB=stock: keeping the stock build';
  let stockDir;
  try {
    stockDir = dirname(require.resolve('hnswlib-node/package.json'));
  } catch {
    return 'hnswlib-node is not installed';
  }
  const version = JSON.parse(readFileSync(join(stockDir, 'package.json'), 'utf8')).version;
  const out = join(dirname(stockDir), TUNED_DIR_NAME);
  const target = targetFor(cpuFlags());
  const manifest = `${JSON.stringify(
    {
      hnswlibNode: version,
      arch: arch(),
      platform: platform(),
      nodeAbi: process.versions.modules,
      requires: target.requires,
      cxxflags: target.cxxflags,
      float32Input: true,
      patches: PATCHES.map((p) => p.why),
      patchesSha256: createHash('sha256').update(JSON.stringify(PATCHES)).digest('hex'),
      addon: 'build/Release/addon.node',
    },
    null,
    2,
  )}\n`;
  // Built already for this hnswlib-node, CPU, Node ABI and these patches: installing again (npm rebuild,
  // npx installing a clone into its cache, which reruns postinstall) does not compile it again.
  if (existsSync(join(out, 'build', 'Release', 'addon.node')) && existsSync(join(out, 'manifest.json')) && readFileSync(join(out, 'manifest.json'), 'utf8') === manifest) {
    return 'up to date';
  }
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  cpSync(join(stockDir, 'src'), join(out, 'src'), { recursive: true });
  cpSync(join(stockDir, 'binding.gyp'), join(out, 'binding.gyp'));
  for (const p of PATCHES) {
    const path = join(out, p.file);
    const parts = readFileSync(path, 'utf8').split(p.find);
    if (parts.length - 1 !== (p.count ?? 1)) {
      rmSync(out, { recursive: true, force: true });
      return `hnswlib-node ${version}'s sources differ from what the patch "${p.why}" expects`;
    }
    writeFileSync(path, parts.join(p.replace));
  }
  const gyp = nodeGypScript();
  if (!gyp) {
    rmSync(out, { recursive: true, force: true });
    return 'node-gyp not found';
  }
  const args = [gyp, 'rebuild'];
  if (process.env.npm_config_nodedir) args.push(`--nodedir=${process.env.npm_config_nodedir}`);
  const result = spawnSync(process.execPath, args, {
    cwd: out,
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 5 * 60 * 1000,
    env: { ...process.env, CXXFLAGS: [process.env.CXXFLAGS, ...target.cxxflags].filter(Boolean).join(' '), JOBS: String(Math.max(1, cpus().length)) },
  });
  const addon = join(out, 'build', 'Release', 'addon.node');
  if (result.status !== 0 || !existsSync(addon)) {
    const tail = String(result.stderr ?? '').trim().split('\n').slice(-5).join('\n  ');
    rmSync(out, { recursive: true, force: true });
    return `compiling failed${tail ? `:\n  ${tail}` : ''}`;
  }
  writeFileSync(join(out, 'manifest.json'), manifest);
  return null;
}

try {
  const started = Date.now();
  const problem = build();
  if (problem === 'up to date') console.error('clipdex: hnswlib for this CPU is built already.');
  else if (problem) console.error(`clipdex: using hnswlib-node's stock build (${problem}).`);
  else console.error(`clipdex: built hnswlib for this CPU in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
} catch (err) {
  console.error(`clipdex: warning: using hnswlib-node's stock build (${err instanceof Error ? err.message : err}).`);
}
