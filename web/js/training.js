/**
 * The training page: options, what the next run will hold out, and Start; the running job followed live
 * from the event stream's `training` events (phase, epoch, early-stopping state, the loss plot); the report
 * of a finished run (retrieval before and after on the test photos no choice saw, both ways, the gain with
 * its interval, the chosen blend, retention, the verdict); and the adapter versions with activate, roll
 * back and export. One job runs at a time on the server, so every button that starts one waits for it.
 */
import { api } from './api.js';
import { formatCount, formatDate, h, show, withCode } from './dom.js';
import { drawLossChart } from './loss-chart.js';

const DIRECTIONS = [
  ['textToImage', 'Text → image'],
  ['imageToText', 'Image → text'],
];
const METRICS = [
  ['r1', 'Recall@1'],
  ['r5', 'Recall@5'],
  ['r10', 'Recall@10'],
  ['meanRank', 'Mean rank'],
];

const pct = (x) => `${(100 * x).toFixed(1)}%`;
/** A change in points with its sign: +14.2, −3.0. */
const points = (x) => `${x > 0 ? '+' : x < 0 ? '−' : '±'}${Math.abs(100 * x).toFixed(1)}`;
const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;

/** What the next run will hold out, in words (GET /api/training/split). */
export function splitText(p) {
  const choices =
    p.selection === 'holdout'
      ? `${plural(p.val.photos, 'photo')} to choose the epoch and blend`
      : `the epoch and blend chosen by ${p.folds}-fold cross-validation over those (too few photos for a validation part of their own)`;
  const skipped = p.skipped ? `; ${plural(p.skipped, 'label')} not usable now (kept)` : '';
  return `Next run: learns from ${plural(p.train.photos, 'photo')}, ${choices}, and tests on ${plural(p.test.photos, 'photo')} that no choice sees${skipped}.`;
}

/** The gain on the test photos with its interval, in words: "+14.2 points … (90% interval +3.0 to +25.0)". */
export function gainText(m) {
  const g = m.gain;
  if (!g) return null;
  return `${points(g.change)} points ${g.metric} on ${plural(m.testImages ?? m.test?.photos ?? 0, 'test photo')} (${pct(g.before)} → ${pct(g.after)}; ${Math.round(g.level * 100)}% interval ${points(g.low)} to ${points(g.high)})`;
}

/** The mean of the six recalls: the one number the trainer compares models by. */
export function meanRecall(m) {
  if (!m) return null;
  const a = m.textToImage;
  const b = m.imageToText;
  return (a.r1 + a.r5 + a.r10 + b.r1 + b.r5 + b.r10) / 6;
}

/**
 * Mean recall before and after on the test photos, as the trainer reported them in its verdict (so the page
 * and the sentence agree to the last digit). A version from before test photos existed has only validation
 * figures per blend; those stand in for it.
 */
export function recallChange(m) {
  if (m.gain) return { before: m.gain.before, after: m.gain.after };
  const at = (blend) => m.blends?.find((b) => b.blend === blend)?.meanRecall;
  const before = at(0) ?? meanRecall(m.before);
  const after = at(m.blend) ?? meanRecall(m.after);
  return before === null || after === null || !m.after ? null : { before, after };
}

/** One line for where a job is, in words. */
export function phaseText(job) {
  const p = job.progress;
  const who = job.kind === 'train' ? 'Training' : job.kind === 'activate' ? 'Activating' : 'Rolling back';
  if (!p) return `${who}: starting…`;
  switch (p.phase) {
    case 'preparing':
      return `Preparing: ${p.message}`;
    case 'decoding':
      return `Image blocks: decoding the labeled photos (${p.done} of ${p.total})`;
    case 'caching':
      return p.of === 'photos' ? `Image blocks: running ${p.total} photos through the frozen blocks once` : `Text blocks: running ${p.total} captions through the frozen blocks once`;
    case 'training': {
      // A run with text or image blocks trains the adapter, then the blocks: say whose epochs these are.
      const whose = p.candidate === 'text-blocks' ? 'Training the text blocks' : p.candidate === 'image-blocks' ? 'Training the image blocks' : p.candidate === 'both-towers' ? 'Training the text blocks against the tuned image blocks' : p.candidate === 'adapter' ? 'Training the adapter' : 'Training';
      return p.training?.stage === 'cross-validation' ? `${whose}: ${p.training.folds}-fold cross-validation` : p.training?.stage === 'final' ? `${whose}: final fit` : whose;
    }
    case 'evaluating':
      return 'Evaluating: retrieval before and after on the test photos';
    case 'projecting':
      return `${who}: re-projecting stored photos`;
    case 'indexing':
      return `${who}: building the search index`;
    case 'switching':
      return `${who}: switching searches over`;
    default:
      return who;
  }
}

export class TrainingView {
  /**
   * @param {Record<string, HTMLElement>} els see main.js
   * @param {{ onJobFinished: (job: object) => void, onActiveChanged: (active: number | null) => void }} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.running = false;
    /** The job last rendered, as kind:startedAt:state, to notice when one finishes. */
    this.lastJobKey = null;
    this.versions = [];
    /** The version searches use (null: the base model; undefined: not known yet). */
    this.active = undefined;
    /** The version whose report is shown (null: the one from the latest run, or none). */
    this.reportVersion = null;
    this.history = [];
    this.bestEpoch = undefined;
    this.loaded = false;

    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.start();
    });
    els.rollbackBase.addEventListener('click', () => this.runJob(() => api.rollback('base'), 'Rolling back to the base model…'));
    els.rollbackForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = Number(els.rollbackTo.value);
      if (Number.isInteger(v) && v > 0) this.runJob(() => api.rollback(v), `Rolling back to adapter v${v}…`);
    });
    els.lossTable.addEventListener('toggle', () => this.renderLossTable());
    drawLossChart(els.chart, []);
    // What the options on the form will hold out, asked again as they change.
    this.splitLine = h('p', { className: 'train-split muted small', id: 'train-split' });
    els.form.append(this.splitLine);
    for (const input of [els.val, els.seed]) input.addEventListener('change', () => this.refreshSplit());
    /** The gain with its interval, under the verdict. */
    this.gainLine = h('p', { className: 'report-gain', id: 'report-gain' });
    els.verdict.after(this.gainLine);
    /** A run with text blocks: both candidates side by side, under the gain. */
    this.comparisonLine = h('p', { className: 'report-comparison muted small', id: 'report-comparison' });
    this.gainLine.after(this.comparisonLine);
    show(this.comparisonLine, false);
    // The text-block depth: built here so the form's other fields stay as they are in the page.
    this.textBlocks = h('input', { id: 'train-text-blocks', name: 'textBlocks', type: 'number', min: '0', max: '64', step: '1', value: '0', required: true, 'aria-describedby': 'train-text-blocks-hint' });
    const field = h(
      'div',
      { className: 'field' },
      h('label', { for: 'train-text-blocks', text: 'Text blocks' }),
      this.textBlocks,
      h('span', { id: 'train-text-blocks-hint', className: 'muted small', text: '0: adapters only; k: also tune the last k text-tower blocks and keep the better' }),
    );
    // The image-block depth beside it: activating such a version re-encodes every photo (the report says how long).
    this.imageBlocks = h('input', { id: 'train-image-blocks', name: 'imageBlocks', type: 'number', min: '0', max: '64', step: '1', value: '0', required: true, 'aria-describedby': 'train-image-blocks-hint' });
    const imageField = h(
      'div',
      { className: 'field' },
      h('label', { for: 'train-image-blocks', text: 'Image blocks' }),
      this.imageBlocks,
      h('span', { id: 'train-image-blocks-hint', className: 'muted small', text: '0: none; k: also tune the last k image-tower blocks and keep the better (with text blocks too: both towers, image first; using it re-encodes every photo)' }),
    );
    const actions = els.form.querySelector('.field-actions');
    if (actions) actions.before(field, imageField);
    else els.form.append(field, imageField);
    /** An image-tuned version: what activating it costs, under the comparison. */
    this.reencodeLine = h('p', { className: 'report-reencode small', id: 'report-reencode' });
    this.comparisonLine.after(this.reencodeLine);
    show(this.reencodeLine, false);
  }

  async refreshSplit() {
    const o = this.readOptions();
    const generation = (this.splitGeneration = (this.splitGeneration ?? 0) + 1);
    try {
      const p = await api.splitPreview({ valFraction: o.valFraction, seed: o.seed });
      if (generation !== this.splitGeneration) return;
      this.splitLine.textContent = splitText(p);
      this.splitLine.dataset.selection = p.selection;
    } catch (err) {
      if (generation === this.splitGeneration) this.splitLine.textContent = err.code === 'NOT_ENOUGH_LABELS' ? '' : err.message;
    }
  }

  /** Called when the page is shown: the job now, and the versions. */
  async load() {
    this.loaded = true;
    await Promise.all([this.refreshJob(), this.loadAdapters(), this.refreshSplit()]);
  }

  async refreshJob() {
    try {
      this.render(await api.training());
    } catch (err) {
      this.fail(err.message);
    }
  }

  async loadAdapters() {
    try {
      const { versions, active } = await api.adapters();
      this.versions = versions;
      this.setActive(active);
      this.renderAdapters();
      // Coming to the page after a run (or a restart): the newest version's report stands in for the run.
      if (this.reportVersion === null && !this.els.report.dataset.version && versions.length) {
        const latest = versions.reduce((a, b) => (b.version > a.version ? b : a));
        this.showReport(latest.metrics, latest.version);
      }
    } catch (err) {
      this.els.adaptersError.replaceChildren(withCode(err.message));
      show(this.els.adaptersError, true);
    }
  }

  /** The server's status names the version searches use; a change made elsewhere (the CLI) shows here too. */
  noteSearchAdapter(version) {
    if (version === this.active) return;
    this.setActive(version);
    if (this.loaded) this.loadAdapters();
  }

  setActive(active) {
    const changed = this.active !== undefined && active !== this.active;
    this.active = active;
    this.els.activeName.textContent = active === null ? 'the base model' : `adapter v${active}`;
    this.els.activeName.dataset.version = active === null ? '' : String(active);
    show(this.els.rollbackBase, active !== null);
    if (changed) this.hooks.onActiveChanged(active);
  }

  readOptions() {
    const num = (input) => (input.value.trim() === '' ? undefined : Number(input.value));
    const opts = {
      epochs: num(this.els.epochs),
      batchSize: num(this.els.batch),
      valFraction: num(this.els.val) === undefined ? undefined : num(this.els.val) / 100,
      seed: num(this.els.seed),
      patience: num(this.els.patience),
      learningRate: num(this.els.lr),
      textBlocks: num(this.textBlocks),
      imageBlocks: num(this.imageBlocks),
    };
    if (opts.textBlocks === 0) delete opts.textBlocks;
    if (opts.imageBlocks === 0) delete opts.imageBlocks;
    for (const k of Object.keys(opts)) if (opts[k] === undefined || Number.isNaN(opts[k])) delete opts[k];
    return opts;
  }

  async start() {
    if (!this.els.form.reportValidity()) return;
    this.reportVersion = null;
    this.history = [];
    this.bestEpoch = undefined;
    delete this.els.report.dataset.version;
    show(this.els.report, false);
    drawLossChart(this.els.chart, []);
    await this.runJob(() => api.train(this.readOptions()), 'Starting training…');
  }

  /** Starts a server job; its progress then arrives as events (the 202 answer is the first of them). */
  async runJob(call, startingText) {
    show(this.els.error, false);
    this.els.phase.textContent = startingText;
    this.setBusy(true);
    try {
      const job = await call();
      this.render({ running: job.state === 'running', job });
    } catch (err) {
      this.setBusy(false);
      this.els.phase.textContent = '';
      this.fail(err.code === 'BUSY' ? `${err.message}.` : err.message);
    }
  }

  setBusy(busy) {
    this.running = busy;
    const { start, rollbackBase, rollbackButton } = this.els;
    start.disabled = busy;
    rollbackBase.disabled = busy;
    rollbackButton.disabled = busy || this.els.rollbackTo.options.length === 0;
    for (const b of this.els.adaptersBody.querySelectorAll('button[data-job]')) b.disabled = busy;
  }

  /** One `training` event (or GET /api/training): `{ running, job }`. */
  render(state) {
    const job = state?.job;
    if (!job) {
      this.setBusy(false);
      this.renderStatusJob(null);
      this.els.phase.textContent = 'Nothing running.';
      return;
    }
    const key = `${job.kind}:${job.startedAt}:${job.state}`;
    // The 202 answer can arrive after the event that says the same job already finished: never step back.
    if (job.state === 'running' && this.lastJobKey?.startsWith(`${job.kind}:${job.startedAt}:`) && !this.lastJobKey.endsWith(':running')) return;
    const finishedNow = key !== this.lastJobKey && job.state !== 'running' && this.lastJobKey?.startsWith(`${job.kind}:${job.startedAt}:`);
    this.lastJobKey = key;
    this.setBusy(job.state === 'running');
    this.renderStatusJob(job);

    if (job.state === 'running') {
      this.els.phase.textContent = phaseText(job);
      this.els.phase.dataset.phase = job.progress?.phase ?? 'starting';
      if (job.kind === 'train') this.renderTraining(job.progress?.phase === 'training' ? job.progress.training : null);
      else this.renderJobDetail(job.progress);
    } else if (job.state === 'failed') {
      this.els.phase.textContent = `${job.kind === 'train' ? 'Training' : job.kind === 'activate' ? 'Activation' : 'Rollback'} failed`;
      this.els.phase.dataset.phase = 'failed';
      this.fail(job.error?.message ?? 'the job failed');
    } else {
      this.els.phase.dataset.phase = 'done';
      if (job.kind === 'train') this.renderTrainDone(job.result);
      else {
        const v = job.result?.adapter?.version ?? null;
        const sw = job.result?.modelSwitch;
        // An image-tuned version: a model switch, re-encoding in the background (the Model panel shows it).
        if (sw?.outcome === 'pending') this.els.phase.textContent = `Re-encoding ${formatCount(sw.total - sw.done)} photos with image-tuned v${v} in the background; searches use the current model until then (progress in the Model panel).`;
        else this.els.phase.textContent = v === null ? 'Searches use the base model again.' : `Searches now use adapter v${v}.`;
        this.els.detail.textContent = job.result?.projected ? `${formatCount(job.result.projected)} photos re-projected in ${(job.result.durationMs / 1000).toFixed(1)} s` : '';
        show(this.els.bar, false);
      }
    }
    if (finishedNow) {
      this.hooks.onJobFinished(job);
      if (this.loaded) this.loadAdapters();
    }
  }

  /** Live numbers of a training run: epoch, early stopping, the curves. */
  renderTraining(t) {
    const { bar, detail, early } = this.els;
    if (!t) {
      show(bar, false);
      detail.textContent = '';
      early.textContent = '';
      return;
    }
    bar.max = t.maxEpochs;
    bar.value = t.epoch;
    show(bar, true);
    detail.dataset.epoch = String(t.epoch);
    detail.dataset.stage = t.stage ?? 'holdout';
    if (t.stage === 'final') {
      detail.textContent = `Final fit on every photo but the test ones: epoch ${formatCount(t.epoch)} of ${formatCount(t.maxEpochs)}`;
      early.textContent = `Cross-validation chose epoch ${t.bestEpoch}.`;
      return;
    }
    detail.textContent = `${t.stage === 'cross-validation' ? `${t.folds}-fold cross-validation: e` : 'E'}poch ${formatCount(t.epoch)} of ${formatCount(t.maxEpochs)}`;
    const lossName = t.stage === 'cross-validation' ? 'mean held-out loss of the folds' : 'validation loss';
    const best = t.bestValLoss === null ? `best epoch ${t.bestEpoch}` : `best epoch ${t.bestEpoch} (${lossName} ${t.bestValLoss.toFixed(3)})`;
    early.textContent = `Early stopping: ${best} · ${t.epochsWithoutImprovement} of ${t.patience} epochs without improvement`;
    early.dataset.sinceBest = String(t.epochsWithoutImprovement);
    this.history = t.history;
    this.bestEpoch = t.bestEpoch;
    drawLossChart(this.els.chart, t.history, { bestEpoch: t.bestEpoch });
    this.renderLossTable();
  }

  renderJobDetail(p) {
    const { bar, detail } = this.els;
    let done = null;
    let total = null;
    if (p?.phase === 'projecting') [done, total] = [p.done, p.total];
    if (p?.phase === 'indexing') [done, total] = [p.index.done, p.index.total];
    show(bar, total !== null && total > 0);
    if (total) {
      bar.max = total;
      bar.value = done;
      detail.textContent = `${formatCount(done)} of ${formatCount(total)}`;
    } else {
      detail.textContent = '';
    }
  }

  renderTrainDone(result) {
    const outcome = result?.outcome;
    const version = result?.adapter?.version;
    show(this.els.bar, false);
    if (!outcome) return;
    this.els.phase.textContent = `Training finished: adapter v${version} saved. ${outcome.improved ? 'It improves on the test photos.' : 'No supported improvement on the test photos.'}`;
    this.els.detail.textContent = `${formatCount(outcome.history.length)} epoch${outcome.history.length === 1 ? '' : 's'} in ${(outcome.durationMs / 1000).toFixed(1)} s`;
    const cv = outcome.selection?.method === 'cross-validation';
    const kept = cv ? `a final fit on every photo but the test ones ran ${outcome.bestEpoch} epochs` : 'its weights were kept';
    const loss = cv ? 'mean held-out loss of the folds' : 'validation loss';
    this.els.early.textContent = outcome.stoppedEarly
      ? `Stopped early: no better ${loss} after epoch ${outcome.bestEpoch}; ${kept}.`
      : `Ran every epoch; best at epoch ${outcome.bestEpoch}; ${kept}.`;
    this.reportVersion = version ?? null;
    this.showReport(outcome, version, result.comparison, result.reencode);
  }

  /** The report of a run: from a job that just finished, or from a stored version's metrics. */
  showReport(m, version, comparison = m.comparison, reencode = m.reencode) {
    const { report } = this.els;
    report.dataset.version = String(version ?? '');
    this.els.reportTitle.textContent = `Adapter v${version}: before and after`;
    this.history = m.history ?? [];
    this.bestEpoch = m.bestEpoch;
    drawLossChart(this.els.chart, this.history, { bestEpoch: m.bestEpoch });
    this.renderLossTable();

    this.els.verdict.replaceChildren(
      h('span', { className: `tag ${m.improved ? 'tag-ok' : 'tag-warn'}`, text: m.improved ? 'improves' : 'no supported gain' }),
      ' ',
      h('span', { className: 'verdict-text', text: m.verdict ?? '' }),
    );
    this.renderGain(m);
    this.renderComparison(comparison);
    this.reencodeLine.textContent = reencode ? `Not searched until activated: ${reencode.note}; searches keep the current model meanwhile.` : '';
    show(this.reencodeLine, Boolean(reencode));
    this.renderMetrics(m.before, m.after, recallChange(m), m);
    this.renderBlend(m.blend, m.blends ?? [], m.selection);
    const r = m.retention;
    this.els.retention.replaceChildren(
      r
        ? h(
            'span',
            {},
            h('strong', { text: pct(r.top10Overlap) }),
            ` of the top 10 photos for ${formatCount(r.phrases)} phrases outside your captions stay the same (searched over ${formatCount(r.gallery)} photos); those phrases' embeddings keep a cosine of `,
            h('strong', { text: r.textCosine.toFixed(3) }),
            ' with the base model’s.',
          )
        : 'Not measured (no photos to search).',
    );
    const sel = m.selection;
    this.els.data.textContent = [
      `learned from ${formatCount(m.trainPairs)} pairs (${plural(m.trainImages, 'photo')})`,
      sel?.method === 'cross-validation'
        ? `epoch and blend chosen by ${sel.folds}-fold cross-validation over those`
        : `${formatCount(m.valPairs)} validation pairs (${plural(m.valImages, 'photo')}) to choose the epoch and blend`,
      m.testImages === undefined ? null : `${formatCount(m.testPairs)} test pairs (${plural(m.testImages, 'photo')}) for the verdict`,
      m.test?.untested?.length ? `untested (too few photos): ${m.test.untested.join(', ')}` : null,
      `${formatCount(m.captions)} captions`,
      m.options ? `seed ${m.options.seed}, batch ${m.options.batchSize}, learning rate ${m.options.learningRate}` : null,
    ]
      .filter(Boolean)
      .join(' · ');
    show(report, true);
    for (const row of this.els.adaptersBody.querySelectorAll('tr')) row.classList.toggle('reported', row.dataset.version === String(version));
  }

  /** Both candidates of a text-block run: their test photos' mean recall and which one the selection saved. */
  renderComparison(c) {
    const el = this.comparisonLine;
    if (!c) {
      el.replaceChildren();
      show(el, false);
      return;
    }
    const line = (name, o) => `${name}: ${o.gain ? `${pct(o.gain.before)} → ${pct(o.gain.after)}` : 'not tested'}${o.improved ? ' (improves)' : ''}`;
    const lora = (r) => (r ? `, LoRA ${r}` : '');
    const parts = [line('Adapter', c.adapter)];
    if (c.textBlocks) parts.push(' · ', line(`text blocks k=${c.textBlocks.k}${lora(c.textBlocks.lora)}`, c.textBlocks));
    if (c.imageBlocks) parts.push(' · ', line(`image blocks k=${c.imageBlocks.k}${lora(c.imageBlocks.lora)}${c.bothTowers ? ' (first stage)' : ''}`, c.imageBlocks));
    if (c.bothTowers) parts.push(' · ', line(`both towers (image k=${c.bothTowers.imageBlocks}, text k=${c.bothTowers.textBlocks}${lora(c.bothTowers.lora)})`, c.bothTowers));
    const saved = { adapter: 'the adapter', 'text-blocks': 'the text blocks', 'image-blocks': 'the image blocks', 'both-towers': 'both towers' }[c.chosen];
    el.replaceChildren(
      ...parts,
      ' · ',
      h('strong', { text: `saved: ${saved}` }),
      ' (the higher on the held-out choice, never the test photos)',
    );
    el.dataset.chosen = c.chosen;
    show(el, true);
  }

  /** The headline gain and its interval, drawn as a bar over a scale around 0 so "includes 0" is visible. */
  renderGain(m) {
    const g = m.gain;
    const el = this.gainLine;
    if (!g) {
      el.replaceChildren();
      show(el, false);
      return;
    }
    const span = Math.max(0.05, Math.abs(g.low), Math.abs(g.high));
    const at = (x) => `${(50 + (50 * x) / span).toFixed(2)}%`;
    // Positions through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    const range = h('span', { className: 'gain-range' });
    range.style.left = at(g.low);
    range.style.width = `calc(${at(g.high)} - ${at(g.low)})`;
    const point = h('span', { className: 'gain-point' });
    point.style.left = at(g.change);
    const scale = h('span', { className: `gain-scale ${g.low > 0 ? 'gain-above' : 'gain-spans'}`, 'aria-hidden': 'true' }, h('span', { className: 'gain-zero' }), range, point);
    el.replaceChildren(scale, ' ', h('span', { className: 'gain-text', text: gainText(m) }));
    el.dataset.low = String(g.low);
    el.dataset.high = String(g.high);
    show(el, true);
  }

  renderMetrics(before, after, change, m = {}) {
    const { metrics, metricsEmpty } = this.els;
    const tbody = metrics.querySelector('tbody');
    if (!before || !after) {
      tbody.replaceChildren();
      show(metrics, false);
      show(metricsEmpty, true);
      return;
    }
    show(metrics, true);
    show(metricsEmpty, false);
    tbody.replaceChildren(
      ...METRICS.map(([key, label]) => {
        const cells = DIRECTIONS.flatMap(([dir]) => {
          const b = before[dir][key];
          const a = after[dir][key];
          const text = (v) => (key === 'meanRank' ? v.toFixed(2) : pct(v));
          // A lower mean rank is better; higher recall is.
          const better = key === 'meanRank' ? a < b - 1e-9 : a > b + 1e-9;
          const worse = key === 'meanRank' ? a > b + 1e-9 : a < b - 1e-9;
          return [
            h('td', { text: text(b), dataset: { direction: dir, metric: key, when: 'before' } }),
            h('td', { text: text(a), className: better ? 'better' : worse ? 'worse' : '', dataset: { direction: dir, metric: key, when: 'after' } }),
          ];
        });
        return h('tr', {}, h('th', { scope: 'row', text: label }), ...cells);
      }),
    );
    const q = DIRECTIONS.map(([dir, label]) => `${label.toLowerCase()}: ${formatCount(before[dir].queries)} queries`).join(', ');
    const where = m.gain ? `the ${plural(m.testImages, 'test photo')}, which no choice saw` : 'the held-out photos';
    metrics.querySelector('caption').textContent = `Retrieval on ${where} (${q})${change ? `; mean recall@1/5/10 ${pct(change.before)} → ${pct(change.after)}` : ''}`;
  }

  renderBlend(blend, blends, selection) {
    const on = selection?.method === 'cross-validation' ? `averaged over the ${selection.folds} cross-validation folds` : 'on the validation photos';
    this.els.blend.replaceChildren(
      h('strong', { text: String(blend) }),
      ` (0 is the base model, 1 the fully tuned one): the smallest blend within half a point of the best mean recall ${on} (never the test photos), so the adapter keeps as much of what the model knew as it can.`,
    );
    this.els.blends.replaceChildren(
      ...blends.map((b) =>
        h('li', { className: b.blend === blend ? 'chosen' : '', title: `blend ${b.blend}: mean recall ${pct(b.meanRecall)}` }, h('span', { className: 'blend-at', text: String(b.blend) }), h('span', { className: 'blend-recall', text: pct(b.meanRecall) })),
      ),
    );
  }

  /** The numbers behind the plot, built only while someone has the table open. */
  renderLossTable() {
    const { lossTable } = this.els;
    const tbody = lossTable.querySelector('tbody');
    if (!lossTable.open) return tbody.replaceChildren();
    tbody.replaceChildren(
      ...this.history.map((r) =>
        h(
          'tr',
          { className: r.epoch === this.bestEpoch ? 'best' : '' },
          h('th', { scope: 'row', text: String(r.epoch) }),
          h('td', { text: r.trainLoss.toFixed(4) }),
          h('td', { text: r.valLoss === null ? '—' : r.valLoss.toFixed(4) }),
          h('td', { text: r.logitScale.toFixed(2) }),
        ),
      ),
    );
  }

  renderAdapters() {
    const { adaptersBody, adaptersTable, adaptersEmpty, rollbackTo, rollbackForm } = this.els;
    const sorted = [...this.versions].sort((a, b) => b.version - a.version);
    adaptersBody.replaceChildren(
      ...sorted.map((v) => {
        const m = v.metrics ?? {};
        const change = recallChange(m);
        const actions = [];
        if (!v.active) {
          actions.push(h('button', { type: 'button', className: 'button button-small button-accent', text: 'Activate', dataset: { job: 'activate' }, 'aria-label': `Activate adapter v${v.version}`, onClick: () => this.activate(v) }));
        }
        actions.push(h('button', { type: 'button', className: 'button button-small', text: 'Report', 'aria-label': `Show the report of adapter v${v.version}`, onClick: () => this.showReport(m, v.version) }));
        actions.push(h('button', { type: 'button', className: 'button button-small', text: 'Export', 'aria-label': `Export adapter v${v.version}`, onClick: (e) => this.exportVersion(v.version, e.currentTarget) }));
        return h(
          'tr',
          { dataset: { version: String(v.version) }, className: `${v.active ? 'active' : ''}${String(v.version) === this.els.report.dataset.version ? ' reported' : ''}` },
          h('th', { scope: 'row' }, `v${v.version}`, v.active ? ' ' : null, v.active ? h('span', { className: 'tag tag-accent', text: 'active' }) : null),
          h('td', { text: formatDate(v.createdAt) }),
          h('td', { text: m.blend === undefined ? '—' : String(m.blend) }),
          h('td', { text: change ? `${pct(change.before)} → ${pct(change.after)}` : '—' }),
          h('td', { title: gainText(m) ?? '' }, h('span', { className: `tag ${m.improved ? 'tag-ok' : 'tag-warn'}`, text: m.improved ? 'improves' : 'no supported gain' })),
          h('td', { className: 'adapter-actions' }, ...actions),
        );
      }),
    );
    show(adaptersTable, sorted.length > 0);
    show(adaptersEmpty, sorted.length === 0);
    const others = sorted.filter((v) => !v.active);
    rollbackTo.replaceChildren(...others.map((v) => h('option', { value: String(v.version), text: `adapter v${v.version} (${formatDate(v.createdAt)})` })));
    show(rollbackForm, others.length > 0);
    this.setBusy(this.running);
  }

  activate(v) {
    // A version without a supported gain on its test photos is kept for comparison; using it is a choice.
    if (!v.metrics?.improved && !window.confirm(`Adapter v${v.version} has no supported gain over the base model on its test photos.\nUse it for searches anyway?`)) return;
    if (v.metrics?.reencode && !window.confirm(`Version v${v.version} has its own image tower: ${v.metrics.reencode.note}.\nSearches keep the current model until then. Start?`)) return;
    this.runJob(() => api.activateAdapter(v.version), `Activating adapter v${v.version}…`);
  }

  async exportVersion(version, button) {
    const { adaptersMessage } = this.els;
    button.disabled = true;
    adaptersMessage.textContent = `Exporting adapter v${version}…`;
    try {
      const { dir } = await api.exportAdapter(version);
      adaptersMessage.replaceChildren(`Exported adapter v${version} as a model folder: `, h('code', { className: 'export-dir', text: dir }), ' (load it with ', h('code', { text: '--model <folder>' }), ').');
    } catch (err) {
      adaptersMessage.replaceChildren(withCode(err.message));
    } finally {
      button.disabled = false;
    }
  }

  /** The status bar's short line about a job, on every page. */
  renderStatusJob(job) {
    const el = this.els.statusJob;
    if (job?.state !== 'running') return show(el, false);
    const t = job.progress?.phase === 'training' ? job.progress.training : null;
    el.textContent = t ? `Training: epoch ${formatCount(t.epoch)}/${formatCount(t.maxEpochs)}` : phaseText(job);
    show(el, true);
  }

  fail(message) {
    this.els.error.replaceChildren(withCode(message));
    show(this.els.error, true);
  }
}
