// What the commands of commands/train-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
/**
 * `clipdex train`: fine-tunes an adapter on the labels, shows each epoch as it ends, then what changed on
 * the test photos (which no choice saw) with how sure that is, and saves the adapter as a new version
 * (activated only with --activate, and only when the gain's interval is above 0).
 */
import type { Command } from 'commander';
import { ClipdexError, isClipdexError } from '../../errors.js';
import { Library } from '../../library/library.js';
import { AdapterService, type ActivationResult, type AdapterJobProgress, type CandidateComparison, type TrainRequest, type TrainResult } from '../../train/adapter-service.js';
import type { DirectionMetrics, RetrievalMetrics } from '../../train/retrieval-metrics.js';
import type { TrainProgress } from '../../train/trainer.js';
import { EXIT, globalOptions, log, printJson, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { activationProgress, seconds } from './adapters-cmd.js';

/**
 * One epoch in words: the losses, the best epoch so far, and how long early stopping still waits. Under
 * cross-validation the losses are the folds' means; the final fit then counts up to the chosen epoch.
 */
function epochLine(p: TrainProgress): string {
  if (p.stage === 'final') return `final fit on every photo but the test ones: epoch ${p.epoch}/${p.maxEpochs}`;
  const last = p.history[p.history.length - 1]!;
  const val = last.valLoss === null ? 'no validation' : `val loss ${last.valLoss.toFixed(4)}`;
  const left = p.patience - p.epochsWithoutImprovement;
  const folds = p.stage === 'cross-validation' ? `${p.folds} folds  ` : '';
  return `${folds}epoch ${p.epoch}/${p.maxEpochs}  train loss ${last.trainLoss.toFixed(4)}  ${val}  best epoch ${p.bestEpoch}  patience ${left}/${p.patience} left`;
}

/**
 * On a terminal one line rewritten in place (no bar: the epoch count is only a ceiling, early stopping
 * usually ends sooner, so the patience left says more); on a pipe one plain line per epoch, a readable log.
 */
function trainingDisplay(): { onProgress: (p: AdapterJobProgress) => void; stop: () => void } {
  const tty = process.stderr.isTTY === true;
  let open = false;
  let lastCandidate: string | undefined;
  const end = () => {
    if (open) process.stderr.write('\n');
    open = false;
  };
  return {
    onProgress(p) {
      if (p.phase === 'preparing') log(`clipdex: ${p.message}`);
      else if (p.phase === 'caching') {
        const image = p.of === 'photos';
        if (p.done === p.total) log(`clipdex: ${image ? 'image' : 'text'} blocks: ${p.total} ${image ? 'photo' : 'caption'}${p.total === 1 ? '' : 's'} run through the frozen blocks once`);
      } else if (p.phase === 'decoding') {
        if (p.done === p.total) log(`clipdex: image blocks: ${p.total} labeled photo${p.total === 1 ? '' : 's'} decoded`);
      }
      else if (p.phase === 'evaluating') {
        end();
        log('clipdex: choosing the blend on the held-out photos, then testing on the test photos');
      } else if (p.phase === 'training') {
        const t = p.training;
        // A run with text blocks trains two candidates one after the other: each line says whose epoch it is.
        if (p.candidate && p.candidate !== lastCandidate) {
          end();
          lastCandidate = p.candidate;
        }
        const line = `${p.candidate ? `${p.candidate}  ` : ''}${epochLine(t)}`;
        if (!tty) return log(line);
        // Cut to the terminal's width: a wrapped line could not be rewritten in place.
        const width = (process.stderr.columns || 120) - 1;
        process.stderr.write(`\r\x1b[2K${line.slice(0, width)}`);
        open = true;
      }
    },
    stop: end,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * Before/after on the test photos. The mean recall row is the trainer's headline (its own rounded
 * figures), so it reads the same as the verdict sentence.
 */
function metricsTable(before: RetrievalMetrics, after: RetrievalMetrics, mean: { before: number; after: number }): string[] {
  const col = (s: string) => s.padStart(9);
  const rows: string[] = [`${''.padEnd(30)}${col('before')}${col('after')}${col('change')}`];
  for (const [name, key] of [
    ['text → image', 'textToImage'],
    ['image → text', 'imageToText'],
  ] as const) {
    const b: DirectionMetrics = before[key];
    const a: DirectionMetrics = after[key];
    const head = `${name}, ${b.queries} ${key === 'textToImage' ? 'caption' : 'photo'}${b.queries === 1 ? '' : 's'}`;
    const share = (k: 'r1' | 'r5' | 'r10' | 'p5' | 'p10', label: string) => `${label.padEnd(30)}${col(pct(b[k]))}${col(pct(a[k]))}${col(signed(100 * (a[k] - b[k]), 1, ' pt'))}`;
    rows.push(head, share('r1', '  recall@1'), share('r5', '  recall@5'), share('r10', '  recall@10'));
    // A caption has many right photos, a photo mostly one right caption (where precision is recall): only
    // text → image says how full of right photos the top k is, beyond recall's "at least one".
    if (key === 'textToImage') rows.push(share('p5', '  precision@5 (of possible)'), share('p10', '  precision@10 (of possible)'));
    rows.push(`${'  mean rank'.padEnd(30)}${col(b.meanRank.toFixed(2))}${col(a.meanRank.toFixed(2))}${col(signed(a.meanRank - b.meanRank, 2, ''))}`);
  }
  rows.push(`${'mean recall@1/5/10'.padEnd(30)}${col(pct(mean.before))}${col(pct(mean.after))}${col(signed(100 * (mean.after - mean.before), 1, ' pt'))}`);
  return rows;
}

/**
 * The candidates of a text- or image-block run side by side: what the selection saw, and the test photos'
 * figures. A run with both adds the joint candidate, its image-only first stage beside it.
 */
function comparisonTable(c: CandidateComparison): string[] {
  const lora = (r: number | null) => (r ? ` LoRA ${r}` : '');
  const others: [string, CandidateComparison['adapter']][] = [];
  if (c.textBlocks) others.push([`text blocks k=${c.textBlocks.k}${lora(c.textBlocks.lora)}`, c.textBlocks]);
  if (c.imageBlocks) others.push([`image blocks k=${c.imageBlocks.k}${lora(c.imageBlocks.lora)}${c.bothTowers ? ' (stage 1)' : ''}`, c.imageBlocks]);
  if (c.bothTowers) others.push([`both: image k=${c.bothTowers.imageBlocks}, text k=${c.bothTowers.textBlocks}${lora(c.bothTowers.lora)}`, c.bothTowers]);
  const saved = { adapter: 'the adapter', 'text-blocks': 'the text blocks', 'image-blocks': 'the image blocks', 'both-towers': 'both towers' }[c.chosen];
  // Wide enough for the longest name or figure, with two spaces between columns.
  const width = Math.max(22, ...others.map(([name]) => name.length + 2));
  const col = (s: string) => s.padStart(width);
  const chosenRecall = (o: CandidateComparison['adapter']) => o.blends.find((b) => Math.abs(b.blend - o.blend) < 1e-9)?.meanRecall ?? 0;
  const test = (o: CandidateComparison['adapter']) => (o.gain ? `${pct(o.gain.after)} (${signed(100 * o.gain.change, 1, ' pt')})` : '—');
  const interval = (o: CandidateComparison['adapter']) => (o.gain ? `${signed(100 * o.gain.low, 1, '')} … ${signed(100 * o.gain.high, 1, ' pt')}` : '—');
  const rows: [string, (o: CandidateComparison['adapter']) => string][] = [
    ['selection mean recall', (o) => pct(chosenRecall(o))],
    ['blend', (o) => ('imageBlend' in o ? `image ${String(o.imageBlend)}, text ${o.blend}` : String(o.blend))],
    ['epochs (best)', (o) => `${o.history.length} (${o.bestEpoch})`],
    ['test mean recall', test],
    ['90% interval on gain', interval],
    ['verdict', (o) => (o.improved ? 'improved' : 'not shown')],
    ['retention (top 10 kept)', (o) => (o.retention ? pct(o.retention.top10Overlap) : '—')],
    ['time', (o) => seconds(o.durationMs)],
  ];
  return [
    `Candidates on the same split (saved: ${saved}, the higher on the selection step${c.bothTowers ? ' of the adapter and both towers' : ''}):`,
    `  ${''.padEnd(24)}${col('adapter')}${others.map(([name]) => col(name)).join('')}`,
    ...rows.map(([label, f]) => `  ${label.padEnd(24)}${col(f(c.adapter))}${others.map(([, o]) => col(f(o))).join('')}`),
  ];
}

function signed(x: number, digits: number, unit: string): string {
  return `${x > 0 ? '+' : ''}${x.toFixed(digits)}${unit}`;
}

function printResult(r: TrainResult, activation: ActivationResult | null, activateRequested: boolean): void {
  const o = r.outcome;
  const out: string[] = [];
  const sel = o.selection;
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  out.push(
    `Learned from ${plural(o.trainPairs, 'pair')} (${plural(o.trainImages, 'photo')}), ${plural(o.captions, 'caption')}; tested on ${plural(o.testImages, 'photo')} no choice saw. ` +
      (sel.method === 'holdout'
        ? `Epoch and blend chosen on ${plural(o.valImages, 'validation photo')}: `
        : `Epoch and blend chosen by ${sel.folds}-fold cross-validation over the ${plural(sel.photos, 'photo')} learned from (too few for a validation part of their own): `) +
      `${plural(o.history.length, 'epoch')}${o.stoppedEarly ? ' (stopped early)' : ''}, best ${o.bestEpoch}, ${seconds(o.durationMs)}.`,
  );
  if (r.skippedPairs > 0) {
    out.push(`${r.skippedPairs} label${r.skippedPairs === 1 ? ' was' : 's were'} left out of this run (kept; they train again once their photo is there):`);
    for (const s of r.skipped.slice(0, 10)) out.push(`  label ${s.pairId} "${s.caption}": ${s.reason}`);
    if (r.skipped.length > 10) out.push(`  … and ${r.skipped.length - 10} more (clipdex labels list)`);
  }
  if (o.before && o.after && o.gain) {
    out.push('', `On the ${plural(o.testImages, 'test photo')}:`, ...metricsTable(o.before, o.after, o.gain).map((l) => `  ${l}`), '');
  }
  out.push(`Blend ${o.blend} (0 = base model, 1 = fully fine-tuned; the smallest as good as the best on the ${sel.method === 'holdout' ? 'validation photos' : 'cross-validation folds'}).`);
  if (o.retention) {
    const t = o.retention;
    out.push(
      `Retention: for ${t.phrases} phrases outside your labels, ${pct(t.top10Overlap)} of the top 10 among ${t.gallery} photos stay the same (mean cosine of a phrase's embedding before and after: ${t.textCosine.toFixed(3)}).`,
    );
  }
  out.push(`Verdict: ${o.verdict}.`);
  if (r.comparison) out.push('', ...comparisonTable(r.comparison), '');
  const kind = r.adapter.metrics.kind;
  out.push(`Saved as ${kind === 'text-blocks' ? 'text-tuned version' : kind === 'image-blocks' ? 'image-tuned version' : kind === 'both-towers' ? 'jointly tuned version (its own image and text towers)' : 'adapter'} v${r.adapter.version}.`);
  if (r.reencode) {
    out.push(`Not searched yet: ${r.reencode.note} (${r.reencode.msPerPhoto} ms a photo, measured on this run's labeled photos); searches keep the current model meanwhile. To use it: clipdex adapters activate ${r.adapter.version} [--wait]`);
  } else if (activation) out.push(`Activated v${r.adapter.version}: ${activation.projected} photos re-projected, ${seconds(activation.durationMs)} in all; searches use it now.`);
  else if (activateRequested) out.push(`Not activated: it has not shown a supported gain over the base model on the test photos; \`clipdex adapters activate ${r.adapter.version}\` activates it anyway.`);
  else if (o.improved) out.push(`Searches still use the model as before; to use it: clipdex adapters activate ${r.adapter.version}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export const actionTrain = async (opts: { epochs?: number; batch?: number; valSplit?: number; testSplit?: number; seed?: number; lr?: number; patience?: number; textBlocks?: number; imageBlocks?: number; lora?: number; activate?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  const library = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  const display = trainingDisplay();
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(EXIT.failure);
    log('\nclipdex: stopping after this epoch (Ctrl-C again to quit at once); nothing is saved');
    abort.abort();
};
      process.on('SIGINT', onSigint);
      try {
        const service = new AdapterService(library);
        const request: TrainRequest = {
          ...(opts.epochs !== undefined ? { epochs: opts.epochs } : {}),
          ...(opts.batch !== undefined ? { batchSize: opts.batch } : {}),
          ...(opts.valSplit !== undefined ? { valFraction: opts.valSplit } : {}),
          ...(opts.testSplit !== undefined ? { testFraction: opts.testSplit } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
          ...(opts.lr !== undefined ? { learningRate: opts.lr } : {}),
          ...(opts.patience !== undefined ? { patience: opts.patience } : {}),
          ...(opts.textBlocks !== undefined ? { textBlocks: opts.textBlocks } : {}),
          ...(opts.imageBlocks !== undefined ? { imageBlocks: opts.imageBlocks } : {}),
          ...(opts.lora !== undefined ? { lora: opts.lora } : {}),
        };
        if (opts.lora && !opts.textBlocks && !opts.imageBlocks) throw new ClipdexError('INVALID_ARGUMENT', '--lora applies to tuned text blocks or image blocks: give --text-blocks k or --image-blocks k too');
        const result = await service.train(request, display.onProgress, abort.signal).catch((err: unknown) => {
          if (!isClipdexError(err, 'NOT_ENOUGH_LABELS')) throw err;
          throw new ClipdexError('NOT_ENOUGH_LABELS', `${err.message}. Label photos first: clipdex label <photo> "caption", or clipdex labels import-folder <dir>`, { cause: err });
        });
        display.stop();
        let activation: ActivationResult | null = null;
        // An image-tuned version is activated by re-encoding the library: left to `adapters activate N` (the report says how long).
        if (opts.activate && result.outcome.improved && !result.reencode) {
          const progress = activationProgress();
          try {
            activation = await service.activate(result.adapter.version, progress.onProgress);
            await library.searchSpace().index.idle();
          } finally {
            progress.stop();
          }
        }
        if (g.json) {
          const { weights: _weights, ...outcome } = result.outcome;
          printJson({
            adapter: activation?.adapter ?? result.adapter,
            outcome,
            skippedPairs: result.skippedPairs,
            skipped: result.skipped,
            ...(result.comparison ? { comparison: result.comparison } : {}),
            ...(result.reencode ? { reencode: result.reencode } : {}),
            activated: activation !== null,
            activation,
          });
        } else printResult(result, activation, opts.activate === true);
      } finally {
        display.stop();
        process.off('SIGINT', onSigint);
        await library.close();
      }
    };
