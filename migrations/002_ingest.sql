-- clipdex schema 2: what ingestion needs beyond schema 1. Applied inside a transaction; no BEGIN/COMMIT.

-- The root folder's identity when it was last scanned ("dev:ino", as text: inode numbers can exceed 2^53).
-- A root that reads as an EMPTY folder with another identity is an unmounted share's bare mount point,
-- not a library whose photos were all deleted. exclude: the user's exclude globs (JSON array), so a
-- later `clipdex index` or `serve` applies the same rules. state_reason: why a root is offline.
ALTER TABLE roots ADD COLUMN identity TEXT;
ALTER TABLE roots ADD COLUMN exclude TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(exclude) AND json_type(exclude) = 'array');
ALTER TABLE roots ADD COLUMN state_reason TEXT;

-- The work queue: paths whose file must be (re)checked, with the size and mtime seen when queued.
-- A separate table rather than images.status = 'pending', so that a changed photo stays searchable
-- under its old content until its new content is known (most "changes" — a touch, a remount that
-- reports mtimes differently, a re-save — turn out to keep the content, and the hash check says so),
-- and so that a new file has no image row (and no id handed to clients) until it is indexed or failed.
-- id grows with every (re)queue: the sink deletes the entry it processed by id, so an entry queued
-- again while its file was being read stays queued and is read again.
CREATE TABLE ingest_queue (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  path        TEXT NOT NULL UNIQUE,
  root_id     INTEGER NOT NULL REFERENCES roots (id) ON DELETE CASCADE,
  size        INTEGER NOT NULL CHECK (size >= 0),
  mtime_ms    REAL NOT NULL,
  enqueued_at INTEGER NOT NULL
) STRICT;
CREATE INDEX ingest_queue_root ON ingest_queue (root_id);

-- A moved file keeps its size and mtime (rename(2) keeps the inode): these find the candidates for a
-- rename cheaply before hashing confirms one.
CREATE INDEX images_size_mtime ON images (size, mtime_ms);
CREATE INDEX ingest_queue_size_mtime ON ingest_queue (size, mtime_ms);
