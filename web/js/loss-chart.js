/**
 * The training loss plot: train and validation loss per epoch as inline SVG, drawn here because the page's
 * Content-Security-Policy (and the no-build rule) leave no room for a chart library. Colours and strokes
 * come from classes in styles.css (no style attributes under the CSP); the chart is redrawn whole on every
 * update, which for a few thousand epochs is still far cheaper than a frame.
 */

const NS = 'http://www.w3.org/2000/svg';
const W = 640;
const H = 260;
const PAD = { left: 52, right: 16, top: 14, bottom: 34 };
/** Up to this many epochs each one gets a dot; beyond, the lines alone stay readable. */
const MAX_DOTS = 60;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

/** About `count` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    return niceTicks(lo - pad, hi + pad, count);
  }
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? 10 * pow;
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toFixed(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toFixed(12)));
  return ticks;
}

function fmt(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** What the chart shows, in one sentence: the accessible name of the SVG. */
export function describeLoss(history, bestEpoch) {
  if (!history.length) return 'Loss by epoch: no epochs yet.';
  const first = history[0];
  const last = history[history.length - 1];
  const parts = [`Loss by epoch, ${history.length} epoch${history.length === 1 ? '' : 's'}: training ${first.trainLoss.toFixed(3)} → ${last.trainLoss.toFixed(3)}`];
  if (first.valLoss !== null && last.valLoss !== null) parts.push(`validation ${first.valLoss.toFixed(3)} → ${last.valLoss.toFixed(3)}`);
  if (bestEpoch) parts.push(`best epoch ${bestEpoch}`);
  return `${parts.join(', ')}.`;
}

/**
 * Replaces the content of `container` with the plot.
 * @param {HTMLElement} container
 * @param {{ epoch: number, trainLoss: number, valLoss: number | null }[]} history
 * @param {{ bestEpoch?: number }} [marks]
 */
export function drawLossChart(container, history, { bestEpoch } = {}) {
  const title = svg('title', { id: `${container.id}-title` }, describeLoss(history, bestEpoch));
  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`,
    class: 'loss-chart',
    role: 'img',
    'aria-labelledby': `${container.id}-title`,
    'data-epochs': history.length,
    'data-train-points': history.length,
    'data-val-points': history.filter((r) => r.valLoss !== null).length,
    'data-best-epoch': bestEpoch ?? '',
  }, title);
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  root.append(svg('rect', { class: 'chart-area', x: x0, y: y1, width: x1 - x0, height: y0 - y1 }));

  if (!history.length) {
    root.append(svg('text', { class: 'chart-empty', x: (x0 + x1) / 2, y: (y0 + y1) / 2, 'text-anchor': 'middle' }, 'The loss curves appear here after the first epoch'));
    container.replaceChildren(root);
    return root;
  }

  const losses = history.flatMap((r) => (r.valLoss === null ? [r.trainLoss] : [r.trainLoss, r.valLoss])).filter(Number.isFinite);
  const yTicks = niceTicks(Math.min(...losses), Math.max(...losses), 4);
  const yLo = yTicks[0];
  const yHi = yTicks[yTicks.length - 1];
  const lastEpoch = history[history.length - 1].epoch;
  // The axis grows with the run: early epochs use the width instead of waiting in a corner for the maximum.
  const xTicks = niceTicks(0, Math.max(lastEpoch, 5), 6).filter((t) => Number.isInteger(t));
  const xHi = xTicks[xTicks.length - 1];
  const sx = (epoch) => x0 + ((epoch - 0) / (xHi - 0)) * (x1 - x0);
  const sy = (loss) => y0 - ((loss - yLo) / (yHi - yLo)) * (y0 - y1);

  const grid = svg('g', { class: 'chart-grid', 'aria-hidden': 'true' });
  for (const t of yTicks) {
    grid.append(svg('line', { x1: x0, x2: x1, y1: sy(t), y2: sy(t) }));
    grid.append(svg('text', { class: 'chart-tick', x: x0 - 6, y: sy(t) + 4, 'text-anchor': 'end' }, fmt(t)));
  }
  for (const t of xTicks) {
    grid.append(svg('text', { class: 'chart-tick', x: sx(t), y: y0 + 16, 'text-anchor': 'middle' }, String(t)));
  }
  grid.append(svg('text', { class: 'chart-axis-label', x: (x0 + x1) / 2, y: H - 4, 'text-anchor': 'middle' }, 'epoch'));
  grid.append(svg('text', { class: 'chart-axis-label', x: 12, y: (y0 + y1) / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${(y0 + y1) / 2})` }, 'loss'));
  root.append(grid);

  if (bestEpoch) {
    root.append(
      svg('g', { class: 'chart-best', 'aria-hidden': 'true' },
        svg('line', { x1: sx(bestEpoch), x2: sx(bestEpoch), y1: y1, y2: y0 }),
        svg('text', { x: sx(bestEpoch) + 4, y: y1 + 12, 'text-anchor': sx(bestEpoch) > x1 - 60 ? 'end' : 'start', dx: sx(bestEpoch) > x1 - 60 ? -8 : 0 }, `best: ${bestEpoch}`),
      ),
    );
  }

  const series = (name, pick) => {
    const pts = history.filter((r) => pick(r) !== null && Number.isFinite(pick(r)));
    if (!pts.length) return null;
    const g = svg('g', { class: `chart-series chart-${name}`, 'aria-hidden': 'true' });
    g.append(svg('polyline', { points: pts.map((r) => `${sx(r.epoch).toFixed(1)},${sy(pick(r)).toFixed(1)}`).join(' ') }));
    if (pts.length <= MAX_DOTS) for (const r of pts) g.append(svg('circle', { cx: sx(r.epoch).toFixed(1), cy: sy(pick(r)).toFixed(1), r: 2.6 }));
    return g;
  };
  root.append(...[series('train', (r) => r.trainLoss), series('val', (r) => r.valLoss)].filter(Boolean));
  container.replaceChildren(root);
  return root;
}
