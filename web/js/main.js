/** Wires the page together: views by URL hash, search, viewer, live status, folders, problems, drop and paste. */
import { Filters } from './filters.js';
import { ProblemsView } from './problems.js';
import { RootsView } from './roots.js';
import { SearchController } from './search.js';
import { StatusBar, connectEvents, toaster } from './status.js';
import { Viewer } from './viewer.js';

const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page lacks #${id}`);
  return el;
};

const input = $('q');

const search = new SearchController(
  {
    input,
    grid: $('results'),
    summary: $('search-summary'),
    error: $('search-error'),
    empty: $('empty-state'),
    more: $('load-more'),
    chips: $('query-chips'),
    fresh: $('new-photos'),
  },
  { onOpen: (index) => viewer.open(index) },
);

const viewer = new Viewer($('viewer'), {
  results: () => search.results,
  bestScore: () => search.bestScore,
  hasMore: () => search.hasMore,
  loadMore: () => search.loadMore(),
  onSimilar: (photo) => {
    route('search');
    search.similarTo(photo).then(() => $('results').querySelector('.card')?.focus());
  },
});

const filters = new Filters(
  { form: $('filters'), toggle: $('filters-toggle'), count: $('filters-count'), formats: $('filter-formats'), folders: $('folder-options') },
  (f) => search.setFilters(f),
);

const roots = new RootsView(
  { list: $('roots-list'), empty: $('roots-empty'), form: $('add-root'), input: $('root-path'), error: $('root-error') },
  (list) => filters.setFolders(list),
);

const problems = new ProblemsView({
  table: $('problems-table'),
  body: $('problems-body'),
  empty: $('problems-empty'),
  more: $('problems-more'),
  error: $('problems-error'),
  refresh: $('problems-refresh'),
});

const statusBar = new StatusBar({
  text: $('status-text'),
  progress: $('status-progress'),
  failed: $('status-failed'),
  model: $('status-model'),
  connection: $('status-connection'),
  problemsCount: $('problems-count'),
  banner: $('model-banner'),
  bannerMessage: $('model-message'),
  bannerFix: $('model-fix'),
});

// ---- views: #/ (search), #/folders, #/problems ----
const VIEWS = ['search', 'folders', 'problems'];
let currentView = null;

function viewFromHash() {
  const name = location.hash.replace(/^#\/?/, '');
  return VIEWS.includes(name) ? name : 'search';
}

function route(name) {
  if (viewFromHash() !== name) location.hash = name === 'search' ? '#/' : `#/${name}`;
  else applyView();
}

function applyView() {
  const name = viewFromHash();
  if (name === currentView) return;
  currentView = name;
  for (const section of document.querySelectorAll('.view')) section.hidden = section.dataset.view !== name;
  for (const link of document.querySelectorAll('.sections a')) {
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (name === 'folders') roots.load();
  if (name === 'problems') problems.load(true);
  document.title = { search: 'clipdex', folders: 'Folders · clipdex', problems: 'Problems · clipdex' }[name];
}

window.addEventListener('hashchange', applyView);
applyView();

// ---- search box ----
$('search-form').addEventListener('submit', (e) => {
  e.preventDefault();
  route('search');
  search.runNow();
});
input.addEventListener('input', () => route('search'));
$('upload-input').addEventListener('change', (e) => {
  route('search');
  search.addUploads(e.target.files);
  e.target.value = '';
});

// "/" jumps to the search box from anywhere but a text field, as on most search sites.
document.addEventListener('keydown', (e) => {
  const typing = e.target instanceof HTMLElement && (e.target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName));
  if (e.key === '/' && !typing && !viewer.isOpen && !e.ctrlKey && !e.metaKey && !e.altKey) {
    e.preventDefault();
    input.focus();
    input.select();
  }
});

// ---- drop or paste an image anywhere ----
const overlay = $('drop-overlay');
let dragDepth = 0;
const carriesFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
document.addEventListener('dragenter', (e) => {
  if (!carriesFiles(e)) return;
  dragDepth++;
  overlay.hidden = false;
});
document.addEventListener('dragleave', (e) => {
  if (!carriesFiles(e)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) overlay.hidden = true;
});
document.addEventListener('dragover', (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
});
document.addEventListener('drop', (e) => {
  if (!carriesFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  overlay.hidden = true;
  viewer.close();
  route('search');
  search.addUploads(e.dataTransfer.files);
});
document.addEventListener('paste', (e) => {
  const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
  if (!files.length) return; // plain text pastes into the box as usual
  e.preventDefault();
  route('search');
  search.addUploads(files);
});

// ---- live status ----
let lastFailed = null;
connectEvents({
  onStatus: (s) => {
    statusBar.render(s);
    const liveRoots = Array.isArray(s.ingest?.roots) ? s.ingest.roots : s.roots;
    if (Array.isArray(liveRoots)) roots.render(liveRoots);
    // The problems page follows new failures while it is open.
    if (currentView === 'problems' && lastFailed !== null && s.failed !== lastFailed) problems.load(true);
    lastFailed = s.failed;
  },
  onIndexed: (items) => search.noteIndexed(items.length),
  onRemoved: (ids) => search.dropPhotos(ids),
  onConnection: (state) => statusBar.setConnection(state),
  onNotice: toaster($('toasts')),
});
