/**
 * The results grid: one focusable card per photo, thumbnail first, name and score on hover or focus. A
 * photo of the timeline has no score: its card says when it was taken, or that it has no capture date.
 */
import { api } from './api.js';
import { h, splitPath } from './dom.js';
import { selectBox } from './selection.js';

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeZone: 'UTC' });

/** A capture date as the camera's own calendar day (dates are stored as their wall clock read as UTC). */
export function dayText(ms) {
  return Number.isFinite(ms) ? dayFormat.format(new Date(ms)) : '';
}

/** What a card says under the name: the score in a search, the day in the timeline. */
function infoText(photo, bestScore) {
  if (typeof photo.score === 'number') return scoreText(photo.score, bestScore);
  return photo.takenAt === null || photo.takenAt === undefined ? `no capture date · file ${dayText(photo.mtimeMs)}` : dayText(photo.takenAt);
}

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
  const scored = typeof photo.score === 'number';
  const info = infoText(photo, bestScore);
  const img = h('img', { src: api.thumbnailUrl(photo.id), alt: '', loading: 'lazy', decoding: 'async', draggable: 'true' });
  const button = h(
    'button',
    {
      type: 'button',
      className: 'card',
      title: scored ? `${name}\nscore ${info}` : `${name}\n${info}`,
      'aria-label': scored ? `${name}, score ${photo.score.toFixed(3)}${photo.strong === false ? ', weaker match' : ''}` : `${name}, ${info}`,
      dataset: { id: String(photo.id), index: String(index) },
      onClick: (e) => {
        if (!selection?.handleClick(e, photo, index)) onOpen(index);
      },
    },
    img,
    h('span', { className: 'card-info', 'aria-hidden': 'true' }, h('span', { className: 'card-name', text: name }), h('span', { className: 'card-score', text: info })),
  );
  // A photo whose thumbnail is missing (still being made, or the file is gone) keeps its place, marked.
  img.addEventListener('error', () => {
    button.classList.add('no-thumb');
    button.prepend(h('span', { className: 'card-placeholder', text: (photo.format ?? 'photo').toUpperCase(), 'aria-hidden': 'true' }));
  });
  const selected = selection?.has(photo.id) ?? false;
  const undated = !scored && (photo.takenAt === null || photo.takenAt === undefined);
  const classes = ['tile', selected && 'selected', photo.strong === false && 'weaker', undated && 'undated'].filter(Boolean).join(' ');
  return h(
    'li',
    { className: classes, dataset: { id: String(photo.id) } },
    button,
    // Seen without hovering: this photo's place comes from its file, not from when it was taken.
    undated ? h('span', { className: 'tile-undated', title: 'No capture date: placed by the file’s time', text: 'no date' }) : null,
    selection ? selectBox(photo, name, index, selection) : null,
  );
}

/** Cards are buttons in document order; arrow keys move between them the way they look on screen. */
export function gridKeys(list) {
  list.addEventListener('keydown', (e) => {
    if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'].includes(e.key)) return;
    // Cards hidden by the relevance cut-off are not on screen: the arrows skip them.
    const cards = [...list.querySelectorAll('.card')].filter((c) => c.offsetParent !== null);
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
