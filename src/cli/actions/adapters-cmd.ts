// What the commands of commands/adapters-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
/**
 * `clipdex adapters …`: the trained versions of the loaded model; which one searches use (activate,
 * rollback), and export as a plain model directory.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { Library } from '../../library/library.js';
import type { AdapterSummary } from '../../store/adapters-repo.js';
import { AdapterService, type ActivationResult, type AdapterJobProgress } from '../../train/adapter-service.js';
import { meanRecall, type RetrievalMetrics } from '../../train/retrieval-metrics.js';
import { globalOptions, log, printJson, type GlobalOptions, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
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

async function withService<T>(g: GlobalOptions, run: (service: AdapterService, library: Library) => Promise<T>): Promise<T> {
  const library = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  try {
    return await run(new AdapterService(library), library);
  } finally {
    await library.close();
  }
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
export function validationRecall(metrics: { before?: unknown; after?: unknown; blend?: unknown; blends?: unknown }): { before: number; after: number } | null {
  const before = metricsOf(metrics.before);
  const after = metricsOf(metrics.after);
  if (!before || !after) return null;
  const blends = Array.isArray(metrics.blends) ? (metrics.blends as { blend: number; meanRecall: number }[]) : [];
  const scored = (blend: unknown) => blends.find((b) => b.blend === blend)?.meanRecall;
  return { before: scored(0) ?? meanRecall(before), after: scored(metrics.blend) ?? meanRecall(after) };
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
    const { versions, active, otherModels } = service.list();
    if (g.json) printJson({ modelKey: library.requireModel().key, searchKey: library.searchSpace().key, active, versions, otherModels });
    else {
      printList(versions, library.requireModel().key);
      for (const m of otherModels) process.stdout.write(`${m.versions.map((v) => `v${v}`).join(', ')}: ${m.note}\n`);
    }
  });
};

export const actionActivate = async (version: number, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  await withService(g, async (service, library) => {
    service.version(version); // an unknown version fails before any work
    const unchanged = library.searchSpace().adapter?.version === version;
    printSwitch(g, await switchTo(service, library, version), library, unchanged);
  });
};

export const actionRollback = async (target: string, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const to = target.trim().toLowerCase() === 'base' ? 'base' : versionArg(target);
  await withService(g, async (service, library) => {
    if (to !== 'base') service.version(to);
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
