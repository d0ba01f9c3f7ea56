// What the commands of commands/models.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { hubEndpoint, isPulled, pullModel } from '../../model/hub-download.js';
import { readModelDir } from '../../model/model-dir.js';
import { importModel } from '../../model/model-import.js';
import type { Crossmodal3600, ModelFamily, ModelLayout, ModelManifest } from '../../model/manifest.js';
import { findManifest, listLocalModels, listManifests, manifestCacheDir } from '../../model/model-registry.js';
import { type AnyPresetName, buildTinyModel } from '../../model/tiny-model-builder.js';
import { forgetModel, ModelSwitcher, RUNNER_STALE_MS, type ModelSwitchStatus } from '../../ingest/model-switch.js';
import { Library } from '../../library/library.js';
import { modelKeyFor } from '../../library/model-key.js';
import { resolveModel } from '../../model/model-registry.js';
import { EXIT, globalOptions, log, printJson, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { createProgress, formatBytes } from '../progress.js';

/** One line of `models list`: a manifest's model, or a `local-…` import (no manifest: `local` true). */
interface ModelRow {
  id: string;
  supported: boolean;
  reason?: string | undefined;
  downloaded: boolean;
  dir: string | null;
  default: boolean;
  embeddingDim: number | null;
  layout: ModelLayout | null;
  repo: string | null;
  local: boolean;
  description: string;
  /** The family of Immich's zoo; null for a local import whose folder does not read. */
  family: ModelFamily | null;
  languages: readonly string[] | null;
  /** Immich's Crossmodal-3600 recall per language, with where it was read; null where Immich's table has no row. */
  crossmodal3600: Crossmodal3600 | null;
}

/** `English 75.19%, German 86.44%…`: the figures in the manifest's order. */
function recallText(figure: Crossmodal3600 | null): string {
  if (!figure) return 'no Crossmodal-3600 figure in Immich\'s table';
  return `Crossmodal-3600 recall (Immich's table): ${Object.entries(figure.recall)
    .map(([language, recall]) => `${language} ${recall}%`)
    .join(', ')}`;
}

function manifestFacts(m: ModelManifest): Pick<ModelRow, 'family' | 'languages' | 'crossmodal3600'> {
  return { family: m.family ?? 'clip', languages: m.languages ?? null, crossmodal3600: m.crossmodal3600 ?? null };
}

function presetFamily(preset: AnyPresetName): string {
  if (preset.startsWith('siglip')) return 'SigLIP';
  if (preset === 'nllb-siglip-tiny') return 'NLLB-CLIP';
  if (preset === 'xlmr-clip-tiny' || preset === 'mclip-tiny') return 'M-CLIP';
  return 'CLIP';
}

/** A model key of this library named by a key, the name before its '#', what loaded it, or the model's files. */
async function keyOf(library: Library, ref: string, cacheDir: string): Promise<string> {
  const known = library.models.knownRefs();
  const stored = library.embeddings.models().map((m) => m.modelKey);
  const byName = (k: string) => k === ref || k.split('#')[0] === ref;
  const hit = known.find((k) => k.ref === ref || byName(k.key))?.key ?? stored.filter((k) => !k.includes('@')).find(byName);
  if (hit) return hit;
  const spec = await resolveModel(ref, { cacheRoot: cacheDir });
  return modelKeyFor(spec, { cacheDir });
}

function rateText(s: ModelSwitchStatus): string {
  return s.filesPerSecond > 0 ? `${s.filesPerSecond.toFixed(1)} photos/s` : '';
}

function duration(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const actionList = async (_opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const rows: ModelRow[] = await Promise.all(
    (await listManifests()).map(async (m): Promise<ModelRow> => {
      const dir = manifestCacheDir(m, g.cacheDir);
      const pulled = m.source ? await isPulled(dir, m.source) : false;
      return {
        id: m.id,
        supported: m.supported,
        ...(m.supported ? {} : { reason: m.unsupportedReason }),
        downloaded: pulled,
        dir: pulled ? dir : null,
        default: m.id === g.modelOrDefault,
        embeddingDim: m.embeddingDim,
        layout: m.layout,
        repo: m.source?.repo ?? null,
        local: false,
        description: m.description,
        ...manifestFacts(m),
};
        }),
      );
      // Imported without --as: no manifest, so the cache is the only list of them.
      for (const l of await listLocalModels(g.cacheDir)) {
        const family = l.error === undefined ? ((await readModelDir(l.dir).catch(() => null))?.family ?? null) : null;
        rows.push({
          id: l.id,
          supported: l.error === undefined,
          ...(l.error === undefined ? {} : { reason: l.error }),
          downloaded: true,
          dir: l.dir,
          default: l.id === g.modelOrDefault,
          embeddingDim: l.embeddingDim,
          layout: l.layout,
          repo: null,
          local: true,
          description: `imported with \`clipdex models import\` on ${l.importedAt.slice(0, 10)}, in ${l.dir}`,
          family,
          languages: null,
          crossmodal3600: null,
        });
      }
      if (g.json) return printJson({ models: rows });
      for (const r of rows) {
        const state = r.local ? (r.supported ? 'imported (local)' : 'imported (local), does not load') : !r.supported ? 'not supported yet' : r.downloaded ? 'downloaded' : 'not downloaded';
        process.stdout.write(`${r.default ? '*' : ' '} ${r.id.padEnd(40)} ${String(r.embeddingDim ?? '?').padStart(4)}-d  ${state}\n`);
        process.stdout.write(`    ${r.description}${r.reason ? ` (${r.reason})` : ''}\n`);
        if (!r.local) {
          process.stdout.write(`    family ${r.family}; languages: ${(r.languages ?? ['not stated']).join(', ')}; ${recallText(r.crossmodal3600)}\n`);
        } else if (r.family) {
          process.stdout.write(`    family ${r.family}\n`);
        }
      }
    };

export const actionPull = async (id: string, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const manifest = await findManifest(id);
  if (!manifest) throw new ClipdexError('MODEL_NOT_FOUND', `unknown model "${id}"; see \`clipdex models list\``);
  if (!manifest.supported) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `model ${id} is not supported yet: ${manifest.unsupportedReason ?? ''}`);
  }
  if (!manifest.source) throw new ClipdexError('MODEL_INVALID', `model ${id} has no download source`);
  const targetDir = manifestCacheDir(manifest, g.cacheDir);
  const endpoint = hubEndpoint();
  log(`Pulling ${id} from ${endpoint}/${manifest.source.repo} into ${targetDir}`);
  const progress = createProgress(`pull ${id}`, { unit: 'bytes' });
  const controller = new AbortController();
  const onSignal = () => controller.abort(new ClipdexError('DOWNLOAD_FAILED', 'interrupted; run the same command again to resume'));
  process.once('SIGINT', onSignal);
  try {
    const result = await pullModel(manifest.source, {
      targetDir,
      endpoint,
      signal: controller.signal,
      onProgress: (e) => progress.update(e.totalBytesDone, e.totalBytes ?? e.totalBytesDone, `${e.file}${e.note ? ` (${e.note})` : ''}`),
    });
    progress.stop();
    await readModelDir(targetDir, manifest);
    const bytes = result.files.reduce((a, f) => a + f.size, 0);
    if (g.json) printJson({ id, dir: targetDir, files: result.files });
    else log(`Done: ${result.files.length} files, ${formatBytes(bytes)} in ${targetDir}`);
  } finally {
    progress.stop();
    process.off('SIGINT', onSignal);
  }
};

export const actionImport = async (dir: string, opts: { as?: string; name?: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  const manifest = opts.as ? await findManifest(opts.as) : undefined;
  if (opts.as && !manifest) throw new ClipdexError('MODEL_NOT_FOUND', `unknown model "${opts.as}"; see \`clipdex models list\``);
  const result = await importModel(dir, { manifest, name: opts.name, cacheRoot: g.cacheDir });
  if (g.json) printJson(result);
  else log(`Imported ${result.files} files (${formatBytes(result.bytes)}) as ${result.id} into ${result.dir}; use it with --model ${result.id}`);
};

export const actionBuildTiny = async (opts: { out: string; preset: AnyPresetName; layout?: 'hf' | 'openclip'; seed: number; vocab?: string; force?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  if (opts.vocab && !existsSync(opts.vocab)) throw new ClipdexError('FILE_NOT_FOUND', `vocabulary not found: ${opts.vocab}`);
  const started = Date.now();
  const built = await buildTinyModel({ ...opts, force: opts.force === true });
  const summary = {
    dir: built.dir,
    layout: built.layout,
    preset: opts.preset,
    seed: opts.seed,
    vocabSize: built.vocabSize,
    embeddingDim: built.arch.embedDim,
    files: built.files,
    seconds: (Date.now() - started) / 1000,
};
      if (g.json) printJson(summary);
      else log(`Wrote ${opts.preset} ${presetFamily(opts.preset)} (${built.layout} layout, ${built.arch.embedDim}-d, vocab ${built.vocabSize}) to ${built.dir}; use it with --model ${built.dir}`);
    };

export const actionUse = async (ref: string | undefined, opts: { wait?: boolean; cancel?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  if (!ref && !opts.cancel) throw new ClipdexError('INVALID_ARGUMENT', 'name the model to use (an id or a directory), or pass --cancel');
  const library = await Library.open(libraryOptions(g));
  let bar: ReturnType<typeof createProgress> | null = null;
  const switcher = new ModelSwitcher(library, {
    cacheDir: g.cacheDir,
    onEvent: (e) => {
      if (e.type === 'model-switch' && bar && e.status.target) bar.update(e.status.done, e.status.total, rateText(e.status));
    },
  });
  try {
    if (opts.cancel) {
      const target = library.models.target();
      const had = await switcher.cancel();
      if (g.json) printJson({ cancelled: had, target: target?.ref ?? null });
      else log(had ? `Cancelled the switch to ${target!.ref}; the photos encoded so far keep their vectors` : 'No switch is under way.');
      return;
    }
    const result = await switcher.use(ref!);
    if (result.outcome !== 'pending') {
      if (g.json) printJson(result);
      else if (result.outcome === 'switched') log(`Switched to ${ref}: every photo already had its vectors (nothing encoded)`);
      else log(`${ref} is already the library's model`);
      return;
    }
    const runner = library.models.runner();
    const serverBusy = runner !== null && runner.pid !== process.pid && Date.now() - runner.at < RUNNER_STALE_MS;
    // Measured on a few of the photos themselves (they stay encoded): the estimate is this machine's.
    const measured = serverBusy ? null : await switcher.measure(4);
    const left = result.total - library.models.coverage(result.key).done;
    const estimate = measured ? { msPerPhoto: Math.round(measured.msPerPhoto * 10) / 10, photos: measured.photos, seconds: Math.round((left * measured.msPerPhoto) / 1000) } : null;
    // On stderr in --json mode too: it is for the person waiting.
    log(
      `Switching to ${ref}: ${left} of ${result.total} photos to encode` +
        (estimate ? `, about ${duration(estimate.seconds)} (${estimate.msPerPhoto} ms a photo, measured on ${estimate.photos})` : '') +
        '; searches use the current model until then',
    );
    if (!opts.wait) {
      if (g.json) printJson({ ...result, estimate });
      else log(`A running \`clipdex serve\` does it in the background (progress in \`clipdex status\` and on the page); otherwise the next \`clipdex serve\`, or \`clipdex models use ${ref} --wait\``);
      return;
    }
    bar = createProgress(`Encoding with ${ref}`);
    bar.update(result.total - left, result.total);
    await switcher.runToEnd();
    bar.stop();
    const now = library.models.current();
    const done = now?.key === result.key;
    if (g.json) printJson({ ...result, outcome: done ? 'switched' : 'cancelled', estimate, encoded: switcher.encoded });
    else log(done ? `Switched to ${ref} (${switcher.encoded} photos encoded here)` : `The switch to ${ref} was cancelled`);
    if (!done) process.exitCode = EXIT.failure;
  } finally {
    bar?.stop();
    await switcher.close();
    await library.close();
  }
};

export const actionForget = async (ref: string, opts: { yes?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  const library = await Library.open({ ...libraryOptions(g), modelOptional: true, session: TOWERS_WHEN_USED });
  try {
    const key = await keyOf(library, ref, g.cacheDir);
    const vectors = library.embeddings.count(key);
    if (!opts.yes) {
      throw new ClipdexError('INVALID_ARGUMENT', `this removes ${vectors} vectors of ${key} and its index; using it again means encoding every photo again. Run again with --yes to confirm`);
    }
    const removed = await forgetModel(library, key);
    if (g.json) printJson(removed);
    else log(`Removed ${removed.vectors} vectors of ${key} and its index`);
  } finally {
    await library.close();
  }
};
