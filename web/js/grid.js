/** The results grid: one focusable card per photo, thumbnail first, name and score on hover or focus. */
import { api } from './api.js';
import { h, splitPath } from './dom.js';
import { selectBox } from './selection.js';

export function scoreText(score, bestScore) {
  const abs = score.toFixed(3);
  return bestScore && bestScore > 0 ? `${abs} · ${Math.round((score / bestScore) * 100)}% of best` : abs;
}

/**
 * @param {{ id: number, path: string, score: number, format: string | null }} photo
 * @param {number} index position in the result list, handed back to onOpen
 * @param {import('./selection.js').Selection} [selection] where photos are picked for labeling
 */
export function card(photo, index, bestScore, onOpen, selection) {
  const { name } = splitPath(photo.path);
  const score = scoreText(photo.score, bestScore);
  const img = h('img', { src: api.thumbnailUrl(photo.id), alt: '', loading: 'lazy', decoding: 'async', draggable: 'true' });
  const button = h(
    'button',
    {
      type: 'button',
      className: 'card',
      title: `${name}\nscore ${score}`,
      'aria-label': `${name}, score ${photo.score.toFixed(3)}`,
      dataset: { id: String(photo.id), index: String(index) },
      onClick: (e) => {
        if (!selection?.handleClick(e, photo, index)) onOpen(index);
      },
    },
    img,
    h('span', { className: 'card-info', 'aria-hidden': 'true' }, h('span', { className: 'card-name', text: name }), h('span', { className: 'card-score', text: score })),
  );
  // A photo whose thumbnail is missing (still being made, or the file is gone) keeps its place, marked.
  img.addEventListener('error', () => {
    button.classList.add('no-thumb');
    button.prepend(h('span', { className: 'card-placeholder', text: (photo.format ?? 'photo').toUpperCase(), 'aria-hidden': 'true' }));
  });
  const selected = selection?.has(photo.id) ?? false;
  return h(
    'li',
    { className: `tile${selected ? ' selected' : ''}`, dataset: { id: String(photo.id) } },
    button,
    selection ? selectBox(photo, name, index, selection) : null,
  );
}

/** Cards are buttons in document order; arrow keys move between them the way they look on screen. */
export function gridKeys(list) {
  list.addEventListener('keydown', (e) => {
    if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'].includes(e.key)) return;
    const cards = [...list.querySelectorAll('.card')];
    const at = cards.indexOf(document.activeElement);
    if (at < 0) return;
    const columns = Math.max(1, getComputedStyle(list).gridTemplateColumns.split(' ').length);
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns, ArrowDown: columns, Home: -at, End: cards.length - 1 - at }[e.key];
    const next = cards[Math.min(cards.length - 1, Math.max(0, at + step))];
    if (next) {
      e.preventDefault();
      next.focus();
    }
  });
}
