// What the commands of commands/adapters-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
/**
 * `clipdex adapters …`: the trained versions of the loaded model; which one searches use (activate,
 * rollback), and export as a plain model directory.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { Library } from '../../library/library.js';
import { ModelSwitcher, RUNNER_STALE_MS } from '../../ingest/model-switch.js';
import { imageTowerOf, textTowerOf } from '../../store/adapters-repo.js';
import type { AdapterSummary } from '../../store/adapters-repo.js';
import { AdapterService, type ActivationResult, type AdapterJobProgress } from '../../train/adapter-service.js';
import { meanRecall, type RetrievalMetrics } from '../../train/retrieval-metrics.js';
import { EXIT, globalOptions, log, printJson, type GlobalOptions, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { createProgress, type Progress } from '../progress.js';
import { optionParser } from '../../validation/param-rules.js';
import { recordIdParam } from '../../validation/id-params.js';

const versionArg = optionParser(recordIdParam, 'a version', 'such as 3; see `clipdex adapters list`');

/** Bars for the two long steps of an activation: re-projecting every stored embedding, then its index. */
export function activationProgress(): { onProgress: (p: AdapterJobProgress) => void; stop: () => void } {
  let bar: { phase: string; progress: Progress } | null = null;
  const show = (phase: string, title: string): Progress => {
    if (bar?.phase !== phase) {
      bar?.progress.stop();
      bar = { phase, progress: createProgress(title) };
    }
    return bar.progress;
  };
  const stop = () => {
    bar?.progress.stop();
    bar = null;
  };
  return {
    onProgress(p) {
      if (p.phase === 'projecting') show('projecting', 'Projecting').update(p.done, p.total, 'embeddings through the adapter');
      else if (p.phase === 'indexing') show('indexing', 'Indexing').update(p.index.done, p.index.total, p.index.phase);
      else if (p.phase === 'switching') stop();
    },
    stop,
  };
}

async function withService<T>(g: GlobalOptions, run: (service: AdapterService, library: Library, switcher: ModelSwitcher) => Promise<T>): Promise<T> {
  const library = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  let bar: Progress | null = null;
  // An image-tuned version is activated (and left) by a model switch; `--wait` runs it here with a bar.
  const switcher = new ModelSwitcher(library, {
    cacheDir: g.cacheDir,
    onEvent: (e) => {
      if (e.type === 'model-switch' && e.status.target) {
        bar ??= createProgress('Re-encoding');
        bar.update(e.status.done, e.status.total, e.status.filesPerSecond > 0 ? `${e.status.filesPerSecond.toFixed(1)} photos/s` : '');
      }
    },
  });
  try {
    return await run(new AdapterService(library, { switcher }), library, switcher);
  } finally {
    (bar as Progress | null)?.stop();
    await switcher.close();
    await library.close();
  }
}

function durationText(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/**
 * The model switch an image-tuned version's activation (or `rollback base` from one) started: an estimate
 * measured on a few of the library's photos (as `models use` does), then, with --wait, the re-encode here.
 */
async function followSwitch(g: GlobalOptions, library: Library, switcher: ModelSwitcher, result: ActivationResult, wait: boolean, what: string): Promise<void> {
  const use = result.modelSwitch!;
  if (use.outcome !== 'pending') {
    if (g.json) printJson({ ...result, modelKey: library.searchSpace().key });
    else process.stdout.write(use.outcome === 'switched' ? `Switched to ${what} (${use.key}): every photo already had its vectors, nothing encoded.\n` : `${what} is already the library's model.\n`);
    return;
  }
  const runner = library.models.runner();
  const serverBusy = runner !== null && runner.pid !== process.pid && Date.now() - runner.at < RUNNER_STALE_MS;
  const measured = serverBusy ? null : await switcher.measure(4);
  const left = use.total - library.models.coverage(use.key).done;
  const estimate = measured ? { msPerPhoto: Math.round(measured.msPerPhoto * 10) / 10, photos: measured.photos, seconds: Math.round((left * measured.msPerPhoto) / 1000) } : null;
  log(
    `Activating ${what}: ${left} of ${use.total} photos to re-encode with its image tower` +
      (estimate ? `, about ${durationText(estimate.seconds)} (${estimate.msPerPhoto} ms a photo, measured on ${estimate.photos})` : '') +
      '; searches use the current model until then',
  );
  if (!wait) {
    if (g.json) printJson({ ...result, estimate });
    else log('A running `clipdex serve` does it in the background (progress in `clipdex status` and on the page); otherwise the next `clipdex serve`, or this command again with --wait');
    return;
  }
  await switcher.runToEnd();
  const done = library.models.current()?.key === use.key;
  if (g.json) printJson({ ...result, modelSwitch: { ...use, outcome: done ? 'switched' : 'cancelled' }, estimate, encoded: switcher.encoded, modelKey: library.requireModel().key });
  else process.stdout.write(done ? `Searches use ${what} (${use.key}); ${switcher.encoded} photos encoded here.\n` : `The switch to ${what} was cancelled.\n`);
  if (!done) process.exitCode = EXIT.failure;
}

/** Switches searches and waits for the new index's background work, so the next search pays nothing. */
async function switchTo(service: AdapterService, library: Library, to: 'base' | number): Promise<ActivationResult> {
  const progress = activationProgress();
  try {
    const result = await service.rollback(to, progress.onProgress);
    await library.searchSpace().index.idle();
    return result;
  } finally {
    progress.stop();
  }
}

function printSwitch(g: GlobalOptions, result: ActivationResult, library: Library, unchanged: boolean): void {
  const space = library.searchSpace();
  if (g.json) return printJson({ ...result, modelKey: space.key, unchanged });
  if (unchanged) process.stdout.write(`Nothing to do: searches already use ${result.adapter ? `adapter v${result.adapter.version}` : 'the base model'} (${space.key}).\n`);
  else if (!result.adapter) process.stdout.write(`Searches use the base model (${space.key}).\n`);
  else {
    process.stdout.write(
      `Searches use adapter v${result.adapter.version} (${space.key}); ${result.projected} photos re-projected, ${seconds(result.durationMs)} in all.\n`,
    );
  }
}

function metricsOf(value: unknown): RetrievalMetrics | null {
  const m = value as Partial<RetrievalMetrics> | null | undefined;
  return m && typeof m === 'object' && m.textToImage && m.imageToText ? (m as RetrievalMetrics) : null;
}

/**
 * Validation mean recall of the base and of the chosen blend, as the trainer scored them (rounded there),
 * so every display agrees with the verdict sentence; null when there was no validation.
 */
export function validationRecall(metrics: { before?: unknown; after?: unknown; blend?: unknown; blends?: unknown; kind?: unknown; comparison?: unknown }): { before: number; after: number } | null {
  const before = metricsOf(metrics.before);
  const after = metricsOf(metrics.after);
  if (!before || !after) return null;
  const listOf = (x: unknown) => (Array.isArray(x) ? (x as { blend: number; meanRecall: number }[]) : []);
  const blends = listOf(metrics.blends);
  const scored = (blend: unknown, list = blends) => list.find((b) => b.blend === blend)?.meanRecall;
  // A joint version's blends are its text stage's, whose blend 0 is the tuned image tower: the base model's
  // score is the image stage's blend 0.
  const baseBlends = metrics.kind === 'both-towers' ? listOf((metrics.comparison as { imageBlocks?: { blends?: unknown } } | undefined)?.imageBlocks?.blends) : blends;
  return { before: scored(0, baseBlends) ?? meanRecall(before), after: scored(metrics.blend) ?? meanRecall(after) };
}

export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function createdAt(ms: number): string {
  const d = new Date(ms);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function printList(versions: AdapterSummary[], baseKey: string): void {
  if (versions.length === 0) {
    process.stdout.write(`No adapters for ${baseKey} yet: label photos, then \`clipdex train\`.\n`);
    return;
  }
  const out = [`   ${'version'.padEnd(9)}${'created'.padEnd(18)}${'blend'.padEnd(7)}val mean recall`];
  out.push(`${versions.some((v) => v.active) ? ' ' : '*'}  ${'base'.padEnd(9)}${''.padEnd(18)}${'0'.padEnd(7)}`);
  for (const v of versions) {
    const r = validationRecall(v.metrics);
    const recall = r ? `${(100 * r.before).toFixed(1)}% → ${(100 * r.after).toFixed(1)}%` : 'not measured';
    out.push(`${v.active ? '*' : ' '}  ${`v${v.version}`.padEnd(9)}${createdAt(v.createdAt).padEnd(18)}${String(v.metrics.blend ?? '?').padEnd(7)}${recall}`);
    // A text-tuned version says so: its searches go through its own text tower, not a projection.
    if (v.metrics.kind === 'image-blocks') {
      const c = v.metrics.comparison as { imageBlocks?: { k?: number; lora?: number | null } } | undefined;
      const re = v.metrics.reencode as { note?: string } | undefined;
      out.push(`       image blocks k=${c?.imageBlocks?.k ?? '?'}${c?.imageBlocks?.lora ? `, LoRA ${c.imageBlocks.lora}` : ''} (its own image tower; ${re?.note ?? 'activating re-encodes every photo'})`);
    }
    if (v.metrics.kind === 'both-towers') {
      const j = v.metrics as { textBlocks?: number; imageBlocks?: number; lora?: number | null; reencode?: { note?: string } };
      out.push(`       image blocks k=${j.imageBlocks ?? '?'}, then text blocks k=${j.textBlocks ?? '?'}${j.lora ? `, LoRA ${j.lora}` : ''} (both towers its own; ${j.reencode?.note ?? 'activating re-encodes every photo'})`);
    }
    if (v.metrics.kind === 'text-blocks') {
      const c = v.metrics.comparison as { textBlocks?: { k?: number; lora?: number | null } } | undefined;
      out.push(`       text blocks k=${c?.textBlocks?.k ?? '?'}${c?.textBlocks?.lora ? `, LoRA ${c.textBlocks.lora}` : ''} (its own text tower; the image tower locked)`);
    }
    if (typeof v.metrics.verdict === 'string') out.push(`       ${v.metrics.verdict}`);
  }
  out.push('(* = what searches use)');
  process.stdout.write(`${out.join('\n')}\n`);
}

export const actionList = async (_opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  await withService(g, async (service, library) => {
    const { versions, active, otherModels, derivedFrom } = service.list();
    if (g.json) printJson({ modelKey: library.requireModel().key, searchKey: library.searchSpace().key, active, versions, otherModels, derivedFrom });
    else {
      if (derivedFrom) {
        process.stdout.write(`The library's model is version ${derivedFrom.version} of ${derivedFrom.baseKey.split('#')[0]} (its tuned ${derivedFrom.kind === 'both-towers' ? 'image and text towers' : 'image tower'}); \`clipdex adapters rollback base\` switches back to ${derivedFrom.baseModel}.\n`);
      }
      printList(versions, library.requireModel().key);
      for (const m of otherModels) process.stdout.write(`${m.versions.map((v) => `v${v}`).join(', ')}: ${m.note}\n`);
    }
  });
};

export const actionActivate = async (version: number, opts: { wait?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  await withService(g, async (service, library, switcher) => {
    const record = service.version(version); // an unknown version fails before any work
    if (imageTowerOf(record)) {
      await followSwitch(g, library, switcher, await service.activate(version), opts.wait === true, `${textTowerOf(record) ? 'jointly tuned' : 'image-tuned'} version v${version}`);
      return;
    }
    const unchanged = library.searchSpace().adapter?.version === version;
    printSwitch(g, await switchTo(service, library, version), library, unchanged);
  });
};

export const actionRollback = async (target: string, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const to = target.trim().toLowerCase() === 'base' ? 'base' : versionArg(target);
  await withService(g, async (service, library, switcher) => {
    if (to !== 'base') service.version(to);
    const derived = to === 'base' ? service.derivedFrom() : null;
    if (derived) {
      await followSwitch(g, library, switcher, await service.rollback('base'), true, `the base model ${derived.baseModel}`);
      return;
    }
    const unchanged = (library.searchSpace().adapter?.version ?? 'base') === to;
    printSwitch(g, await switchTo(service, library, to), library, unchanged);
  });
};

export const actionExport = async (version: number, opts: { out?: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  await withService(g, async (service) => {
    const { dir } = await service.export(version, opts.out === undefined ? undefined : resolve(opts.out));
    if (g.json) printJson({ version, dir });
    else {
      process.stdout.write(`${dir}\n`);
      log(`clipdex: adapter v${version} exported; search with it: clipdex --model ${dir} index <folders>`);
    }
  });
};
