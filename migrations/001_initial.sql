-- clipdex schema 1. Applied inside a transaction by src/store/migrations.ts: no BEGIN/COMMIT here.
-- SQLite is the source of truth; the vector index files are derived from it and rebuildable.

-- One row per library database; the index files record this id so an index built for another
-- (deleted and recreated) database is never applied to this one.
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('library_id', lower(hex(randomblob(16))));

CREATE TABLE roots (
  id           INTEGER PRIMARY KEY,
  path         TEXT NOT NULL UNIQUE,
  added_at     INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'offline')),
  last_scan_at INTEGER
) STRICT;

-- AUTOINCREMENT: an image id is also the vector index label and what API clients hold on to,
-- so a deleted image's id is never handed to a different file.
CREATE TABLE images (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  root_id       INTEGER NOT NULL REFERENCES roots (id) ON DELETE CASCADE,
  path          TEXT NOT NULL UNIQUE,
  size          INTEGER NOT NULL CHECK (size >= 0),
  mtime_ms      REAL NOT NULL,
  content_hash  TEXT,
  width         INTEGER,
  height        INTEGER,
  format        TEXT,
  taken_at      INTEGER,
  camera_make   TEXT,
  camera_model  TEXT,
  status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'indexed', 'error', 'offline')),
  error_code    TEXT,
  error_message TEXT,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL
) STRICT;
-- (content_hash, status): the change-log triggers look up indexed images by content; with only single-column
-- indexes SQLite may pick the status one and scan every indexed photo per new embedding (quadratic ingest).
CREATE INDEX images_content_hash ON images (content_hash, status);
CREATE INDEX images_status ON images (status);
CREATE INDEX images_taken_at ON images (taken_at);
CREATE INDEX images_root ON images (root_id);
-- Format filters compare case-insensitively; an expression index lets them skip the other formats.
CREATE INDEX images_format ON images (lower(format));
-- path already has the UNIQUE index, which also serves folder-prefix range scans.

-- Which models have embeddings, and their dimension: one dimension per model key, checked on write.
CREATE TABLE embedding_models (
  model_key  TEXT PRIMARY KEY,
  dim        INTEGER NOT NULL CHECK (dim > 0),
  created_at INTEGER NOT NULL
) STRICT;

-- Keyed by content, not by image: identical files share one row and a renamed file keeps its vector.
CREATE TABLE embeddings (
  id           INTEGER PRIMARY KEY,
  content_hash TEXT NOT NULL,
  model_key    TEXT NOT NULL REFERENCES embedding_models (model_key) ON DELETE CASCADE,
  dim          INTEGER NOT NULL,
  vector       BLOB NOT NULL CHECK (length(vector) = dim * 4),
  created_at   INTEGER NOT NULL,
  UNIQUE (content_hash, model_key)
) STRICT;
CREATE INDEX embeddings_model ON embeddings (model_key);

CREATE TABLE labeled_pairs (
  id         INTEGER PRIMARY KEY,
  image_id   INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  caption    TEXT NOT NULL CHECK (length(caption) > 0),
  split      TEXT NOT NULL CHECK (split IN ('train', 'val')),
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX labeled_pairs_image ON labeled_pairs (image_id);

CREATE TABLE adapters (
  id         INTEGER PRIMARY KEY,
  model_key  TEXT NOT NULL,
  version    INTEGER NOT NULL,
  weights    BLOB NOT NULL,
  metrics    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
  created_at INTEGER NOT NULL,
  active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
  UNIQUE (model_key, version)
) STRICT;
-- At most one active adapter per model: the database refuses a second, whatever the caller does.
CREATE UNIQUE INDEX adapters_one_active ON adapters (model_key) WHERE active = 1;

-- What a vector index for a model key should contain: every indexed image whose content has an
-- embedding under that key. The index manager builds from this view and replays against it.
CREATE VIEW index_members AS
  SELECT e.model_key AS model_key, i.id AS image_id, e.vector AS vector
  FROM images i JOIN embeddings e ON e.content_hash = i.content_hash
  WHERE i.status = 'indexed';

-- Model keys that have a derived vector index; only these get change-log rows.
-- pruned_through: log rows up to this seq are gone, so an index checkpointed earlier cannot catch up.
-- saved_checkpoint: the checkpoint of the last saved index file, written (with a full WAL sync) just
-- before that file's state is committed, so an index never claims changes SQLite could still lose.
CREATE TABLE vector_indexes (
  model_key        TEXT PRIMARY KEY,
  pruned_through   INTEGER NOT NULL DEFAULT 0,
  saved_checkpoint INTEGER,
  registered_at    INTEGER NOT NULL
) STRICT;

-- Append-only log of image ids whose index membership or vector may have changed, written by the
-- triggers below in the same transaction as the change itself, so no writer can forget it and no
-- crash can separate the two. Replay reads the CURRENT state of each logged id (index_members), which
-- makes it idempotent and independent of order.
CREATE TABLE index_changes (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  model_key TEXT NOT NULL,
  image_id  INTEGER NOT NULL
) STRICT;
CREATE INDEX index_changes_key_seq ON index_changes (model_key, seq);

CREATE TRIGGER images_index_insert AFTER INSERT ON images
WHEN NEW.status = 'indexed'
BEGIN
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, NEW.id FROM vector_indexes;
END;

CREATE TRIGGER images_index_update AFTER UPDATE OF status, content_hash, id ON images
WHEN (OLD.status = 'indexed' OR NEW.status = 'indexed')
  AND (OLD.status IS NOT NEW.status OR OLD.content_hash IS NOT NEW.content_hash OR OLD.id IS NOT NEW.id)
BEGIN
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, OLD.id FROM vector_indexes WHERE OLD.id IS NOT NEW.id;
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, NEW.id FROM vector_indexes;
END;

CREATE TRIGGER images_index_delete AFTER DELETE ON images
WHEN OLD.status = 'indexed'
BEGIN
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, OLD.id FROM vector_indexes;
END;

CREATE TRIGGER embeddings_index_insert AFTER INSERT ON embeddings
WHEN NEW.model_key IN (SELECT model_key FROM vector_indexes)
BEGIN
  INSERT INTO index_changes (model_key, image_id)
    SELECT NEW.model_key, id FROM images WHERE content_hash = NEW.content_hash AND status = 'indexed';
END;

CREATE TRIGGER embeddings_index_update AFTER UPDATE ON embeddings
BEGIN
  INSERT INTO index_changes (model_key, image_id)
    SELECT OLD.model_key, id FROM images
    WHERE content_hash = OLD.content_hash AND status = 'indexed'
      AND OLD.model_key IN (SELECT model_key FROM vector_indexes);
  INSERT INTO index_changes (model_key, image_id)
    SELECT NEW.model_key, id FROM images
    WHERE content_hash = NEW.content_hash AND status = 'indexed'
      AND NEW.model_key IN (SELECT model_key FROM vector_indexes)
      AND (OLD.content_hash IS NOT NEW.content_hash OR OLD.model_key IS NOT NEW.model_key);
END;

CREATE TRIGGER embeddings_index_delete AFTER DELETE ON embeddings
WHEN OLD.model_key IN (SELECT model_key FROM vector_indexes)
BEGIN
  INSERT INTO index_changes (model_key, image_id)
    SELECT OLD.model_key, id FROM images WHERE content_hash = OLD.content_hash AND status = 'indexed';
END;
