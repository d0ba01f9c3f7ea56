// What the commands of commands/doctor.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { errorMessage, isClipdexError } from '../../errors.js';
import { hnswlibBuild } from '../../index/hnswlib-binding.js';
import { onnxRuntimeVersion, providerUnavailableReason } from '../../inference/onnx-runtime.js';
import { lostDatabaseReason, REINIT_ENV } from '../../library/lost-database.js';
import { ClipModel } from '../../model/clip-model.js';
import { resolveModel } from '../../model/model-registry.js';
import { checkIntegrity, damagedDatabaseAdvice, databaseContent, libraryPaths } from '../../store/database.js';
import { EXIT, globalOptions, printJson } from '../context.js';

export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix?: string;
}

/** The nearest existing ancestor is what must be writable for clipdex to create the directory. */
function writableDir(dir: string): Check['status'] {
  let d = dir;
  while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
  try {
    accessSync(d, constants.W_OK);
    return 'ok';
  } catch {
    return 'fail';
  }
}

/**
 * The library database: lost (new or empty beside a library's thumbnails), damaged (SQLite's own check finds
 * bad pages), or sound. quick_check by default: it reads every page but skips matching each index against
 * its table, which makes the full integrity_check several times slower on a large library.
 */
export function libraryCheck(dataDir: string, full = false): Check {
  const paths = libraryPaths(dataDir);
  const name = 'library database';
  try {
    const lost = lostDatabaseReason(paths);
    if (lost) {
      return {
        name,
        status: 'fail',
        detail: lost,
        fix: `restore library.db (and library.db-wal) from a backup; or, to index the photos again into a new database, run once with ${REINIT_ENV}=1`,
      };
    }
    if (databaseContent(paths.database) !== 'library') return { name, status: 'ok', detail: `${paths.database} (a new library: will be created)` };
    const report = checkIntegrity(paths.database, { full });
    if (report.problems.length > 0) {
      const n = report.problems.length;
      return {
        name,
        status: 'fail',
        detail: `${paths.database} is damaged: ${report.mode} found ${n} problem${n === 1 ? '' : 's'}: ${report.problems.slice(0, 5).join('; ')}`,
        fix: damagedDatabaseAdvice(paths.database),
      };
    }
    return {
      name,
      status: 'ok',
      detail: `${paths.database}: ${report.mode} ok${full ? '' : ' (`clipdex doctor --full` also matches every index against its table)'}`,
    };
  } catch (err) {
    return {
      name,
      status: 'fail',
      detail: errorMessage(err),
      fix: isClipdexError(err, 'LIBRARY_DAMAGED') ? damagedDatabaseAdvice(paths.database) : 'point --data-dir at a clipdex library, or move this file aside',
    };
  }
}

export async function runChecks(g: { modelOrDefault: string; dataDir: string; cacheDir: string }, options: { full?: boolean } = {}): Promise<Check[]> {
  const checks: Check[] = [];
  checks.push({
    name: 'runtime',
    status: 'ok',
    detail: `Node ${process.versions.node} on ${process.platform}/${process.arch}, ${availableParallelism()} CPUs, onnxruntime-node ${onnxRuntimeVersion()}`,
  });

  const cuda = providerUnavailableReason('cuda');
  checks.push(
    cuda
      ? { name: 'gpu', status: 'warn', detail: `CUDA not used: ${cuda}`, fix: 'clipdex runs on the CPU; see README "GPU (CUDA)" to enable a GPU' }
      : { name: 'gpu', status: 'ok', detail: 'CUDA provider installed and an NVIDIA driver found' },
  );

  checks.push(
    hnswlibBuild.kind === 'clipdex'
      ? { name: 'vector index', status: 'ok', detail: `hnswlib-node ${hnswlibBuild.version}, clipdex's build for this CPU${hnswlibBuild.features.length ? ` (${hnswlibBuild.features.join(' ')})` : ''}` }
      : {
          name: 'vector index',
          status: 'warn',
          detail: `hnswlib-node ${hnswlibBuild.version}, stock build: ${hnswlibBuild.reason ?? 'unknown reason'}`,
          fix:
            hnswlibBuild.reason === 'CLIPDEX_HNSWLIB=stock'
              ? 'unset CLIPDEX_HNSWLIB to search ~1.6× faster on large libraries with clipdex\'s build'
              : 'searches work, ~1.6× slower on large libraries; `npm run build:hnswlib` in clipdex\'s folder builds it for this CPU',
        },
  );

  try {
    const spec = await resolveModel(g.modelOrDefault, { cacheRoot: g.cacheDir });
    const model = await ClipModel.load(spec);
    // Loaded with both towers open: it has providers.
    const p = model.providers!;
    checks.push({
      name: 'model',
      status: 'ok',
      detail: `${spec.id} (${spec.layout} layout, ${model.dim}-d, input ${spec.preprocess.size}px) in ${spec.dir}`,
    });
    checks.push({
      name: 'execution provider',
      status: p.image === 'cpu' && !cuda ? 'warn' : 'ok',
      detail: `image encoder on ${p.image}, text encoder on ${p.text}${p.fallbacks.length ? `; skipped: ${p.fallbacks.map((f) => `${f.provider} (${f.reason})`).join('; ')}` : ''}`,
    });
    await model.release();
  } catch (err) {
    const missing = isClipdexError(err, 'MODEL_NOT_FOUND');
    checks.push({
      name: 'model',
      status: 'fail',
      detail: errorMessage(err),
      fix: missing
        ? `run \`clipdex models pull ${g.modelOrDefault}\`, or \`clipdex models import <dir>\` on an offline machine, or pass --model <dir>`
        : 'check the model files; `clipdex models pull` again replaces corrupt files',
    });
  }

  for (const [name, dir] of [
    ['data directory', g.dataDir],
    ['model cache', g.cacheDir],
  ] as const) {
    const status = writableDir(dir);
    checks.push({
      name,
      status,
      detail: `${dir}${existsSync(dir) ? '' : ' (will be created)'}`,
      ...(status === 'fail' ? { fix: `make it writable, or choose another with --${name === 'model cache' ? 'cache' : 'data'}-dir` } : {}),
    });
  }

  checks.push(libraryCheck(g.dataDir, options.full));

  const watchesFile = '/proc/sys/fs/inotify/max_user_watches';
  if (existsSync(watchesFile)) {
    const watches = Number(readFileSync(watchesFile, 'utf8').trim());
    checks.push(
      watches < 65536
        ? {
            name: 'watch limit',
            status: 'warn',
            detail: `inotify max_user_watches is ${watches}: large photo trees will fall back to polling`,
            fix: 'sudo sysctl fs.inotify.max_user_watches=524288 (and add it to /etc/sysctl.conf)',
          }
        : { name: 'watch limit', status: 'ok', detail: `inotify max_user_watches is ${watches}` },
    );
  }
  return checks;
}

export const actionDoctor = async (opts: { full?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  const checks = await runChecks(g, { full: opts.full === true });
  const failed = checks.some((c) => c.status === 'fail');
  if (g.json) printJson({ ok: !failed, checks });
  else {
    const mark = { ok: '✓', warn: '!', fail: '✗' } as const;
    for (const c of checks) {
      process.stdout.write(`${mark[c.status]} ${c.name}: ${c.detail}\n`);
      if (c.fix) process.stdout.write(`    fix: ${c.fix}\n`);
    }
  }
  if (failed) process.exitCode = EXIT.failure;
};
