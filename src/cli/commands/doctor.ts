import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { Command } from 'commander';
import * as ort from 'onnxruntime-node';
import { errorMessage, isClipdexError } from '../../errors.js';
import { hnswlibBuild } from '../../index/hnswlib-binding.js';
import { ClipModel } from '../../model/clip-model.js';
import { resolveModel } from '../../model/model-registry.js';
import { providerUnavailableReason } from '../../model/ort-session.js';
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

export async function runChecks(g: { model: string; dataDir: string; cacheDir: string }): Promise<Check[]> {
  const checks: Check[] = [];
  checks.push({
    name: 'runtime',
    status: 'ok',
    detail: `Node ${process.versions.node} on ${process.platform}/${process.arch}, ${availableParallelism()} CPUs, onnxruntime-node ${ort.env.versions.common}`,
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
    const spec = await resolveModel(g.model, { cacheRoot: g.cacheDir });
    const model = await ClipModel.load(spec);
    const p = model.providers;
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
        ? `run \`clipdex models pull ${g.model}\`, or \`clipdex models import <dir>\` on an offline machine, or pass --model <dir>`
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

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check the model, execution providers, directories and limits, with a fix for each problem')
    .action(async (_opts: unknown, cmd: Command) => {
      const g = globalOptions(cmd);
      const checks = await runChecks(g);
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
    });
}
