/**
 * Wires the page together: views by URL hash, search with selection for labeling, viewer, live status,
 * labels, training, folders, problems, drop and paste.
 */
import { Filters } from './filters.js';
import { formatCount } from './dom.js';
import { DuplicatesView } from './duplicates.js';
import { LabelsView } from './labels.js';
import { ProblemsView } from './problems.js';
import { RootsView } from './roots.js';
import { SearchController } from './search.js';
import { Selection } from './selection.js';
import { StatusBar, connectEvents, toaster } from './status.js';
import { Timeline } from './timeline.js';
import { TrainingView } from './training.js';
import { Viewer } from './viewer.js';

const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page lacks #${id}`);
  return el;
};

const input = $('q');
const toast = toaster($('toasts'));

const selection = new Selection(
  {
    bar: $('label-bar'),
    count: $('selection-count'),
    live: $('selection-live'),
    caption: $('label-caption'),
    captions: $('caption-options'),
    submit: $('label-submit'),
    selectAll: $('select-all'),
    clear: $('select-clear'),
    message: $('label-message'),
    mode: $('select-mode'),
    grids: [$('results'), $('timeline')],
    tray: $('selection-tray'),
    elsewhere: $('selection-elsewhere'),
  },
  {
    results: () => shown().shown(),
    onLabeled: () => labels.refreshSummary(),
  },
);

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
  { onOpen: (index) => viewer.open(index), selection, onIdle: (idle) => timeline.setActive(idle) },
);

// The home view, while the search box is empty: the library by date.
const timeline = new Timeline(
  {
    root: $('timeline'),
    list: $('timeline-list'),
    summary: $('timeline-summary'),
    jump: $('timeline-jump'),
    newest: $('timeline-newest'),
    more: $('timeline-more'),
    error: $('timeline-error'),
    empty: $('empty-state'),
  },
  { onOpen: (index) => viewer.open(index), selection },
);
/** What the page shows now: search results, or the timeline while there is no query. */
const shown = () => (timeline.active ? timeline : search);

const viewer = new Viewer($('viewer'), {
  results: () => shown().shown(),
  bestScore: () => shown().bestScore,
  hasMore: () => shown().canLoadMore(),
  loadMore: () => shown().loadMore(),
  cardAt: (index) => (timeline.active ? $('timeline') : $('results')).querySelector(`.card[data-index="${index}"]`),
  onSimilar: (photo) => {
    route('search');
    search.similarTo(photo).then(() => $('results').querySelector('.card')?.focus());
  },
  onLabeled: () => labels.refreshSummary(),
});

const labels = new LabelsView(
  {
    captions: $('captions-list'),
    counts: $('labels-counts'),
    filter: $('labels-filter'),
    table: $('labels-table'),
    body: $('labels-body'),
    empty: $('labels-empty'),
    more: $('labels-more'),
    error: $('labels-error'),
    status: $('labels-status'),
    importForm: $('import-labels'),
    importFolder: $('import-folder'),
    importTemplate: $('import-template'),
    importMessage: $('import-message'),
  },
  ({ captions, counts }) => {
    selection.setCaptions(captions);
    const total = counts.train + counts.val;
    $('train-labels-summary').textContent =
      total === 0
        ? 'No labels yet: label photos first (at least 4 photos with 2 different captions).'
        : `Training data: ${formatCount(total)} labels with ${formatCount(captions.length)} caption${captions.length === 1 ? '' : 's'}.`;
  },
);

const training = new TrainingView(
  {
    form: $('train-form'),
    epochs: $('train-epochs'),
    batch: $('train-batch'),
    val: $('train-val'),
    seed: $('train-seed'),
    patience: $('train-patience'),
    lr: $('train-lr'),
    start: $('train-start'),
    error: $('train-error'),
    phase: $('train-phase'),
    bar: $('train-bar'),
    detail: $('train-detail'),
    early: $('train-early'),
    chart: $('loss-chart'),
    lossTable: $('loss-table'),
    report: $('train-report'),
    reportTitle: $('report-title'),
    verdict: $('report-verdict'),
    metrics: $('report-metrics'),
    metricsEmpty: $('report-metrics-empty'),
    blend: $('report-blend'),
    blends: $('report-blends'),
    retention: $('report-retention'),
    data: $('report-data'),
    activeName: $('adapters-active-name'),
    adaptersTable: $('adapters-table'),
    adaptersBody: $('adapters-body'),
    adaptersEmpty: $('adapters-empty'),
    adaptersError: $('adapters-error'),
    adaptersMessage: $('adapters-message'),
    rollbackBase: $('rollback-base'),
    rollbackForm: $('rollback-form'),
    rollbackTo: $('rollback-to'),
    rollbackButton: $('rollback-button'),
    statusJob: $('status-job'),
  },
  {
    onJobFinished: (job) => {
      if (job.state === 'failed') toast({ message: `${job.kind === 'train' ? 'Training' : 'Switching adapters'} failed: ${job.error?.message ?? 'unknown error'}`, failure: true });
      else if (job.kind === 'train') toast({ message: `Training finished: adapter v${job.result?.adapter?.version} saved.` });
      // Training assigns each labeled photo to training or validation: the labels page shows the split.
      if (job.kind === 'train') {
        if (currentView === 'labels') labels.load(true);
        else labels.refreshSummary();
      }
    },
    // A new search space ranks differently: results on screen are from the old one.
    onActiveChanged: (active) => search.noteSpaceChanged(active === null ? 'Searches use the base model again' : `Searches now use adapter v${active}`),
  },
);

const filters = new Filters(
  { form: $('filters'), toggle: $('filters-toggle'), count: $('filters-count'), formats: $('filter-formats'), folders: $('folder-options') },
  (f) => {
    timeline.setFilters(f);
    search.setFilters(f);
  },
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
  adapter: $('status-adapter'),
  connection: $('status-connection'),
  problemsCount: $('problems-count'),
  banner: $('model-banner'),
  bannerMessage: $('model-message'),
  bannerFix: $('model-fix'),
});

const duplicates = new DuplicatesView($('view-duplicates'), { toasts: $('toasts') });

// ---- views: #/ (search), #/labels, #/training, #/folders, #/problems, #/duplicates ----
const VIEWS = ['search', 'labels', 'training', 'folders', 'problems', 'duplicates'];
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
  if (name === 'duplicates') duplicates.load();
  if (name === 'labels') labels.load(true);
  if (name === 'training') {
    training.load();
    labels.refreshSummary();
  }
  document.title = { search: 'clipdex', labels: 'Labels · clipdex', training: 'Training · clipdex', folders: 'Folders · clipdex', problems: 'Problems · clipdex', duplicates: 'Duplicates · clipdex' }[name];
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
  // Escape lets go of a selection, the way it leaves select mode in file managers.
  if (e.key === 'Escape' && !typing && !viewer.isOpen && currentView === 'search' && (selection.size > 0 || selection.mode)) selection.clear();
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
    if (s.search) training.noteSearchAdapter(s.search.adapter?.version ?? null);
  },
  onIndexed: (items) => {
    search.noteIndexed(items.length);
    timeline.noteIndexed(items.length);
  },
  onRemoved: (ids) => {
    search.dropPhotos(ids);
    timeline.dropPhotos(ids);
    selection.drop(ids);
  },
  onConnection: (state) => {
    statusBar.setConnection(state);
    // Events missed while the stream was down are not replayed: ask for the job as it is now.
    if (state === 'live') training.refreshJob();
  },
  onNotice: toast,
  onTraining: (t) => training.render(t),
});
labels.refreshSummary();
// Nothing is asked yet: the page opens on the library.
if (!search.hasQuery()) timeline.setActive(true);
