-- clipdex schema 3: labels are keyed by the photo's content, not by its row. Applied inside a transaction
-- (foreign keys off, checked before commit); no BEGIN/COMMIT.
--
-- A label is the user's work; an image row is ingestion's bookkeeping, deleted and made again whenever a
-- move is not recognised as one (a new mtime, a rename hold that expired), a folder is removed and added
-- back, or a share goes away and returns. Until now a label died with its row (ON DELETE CASCADE). Now:
-- - content_hash is the key: the label belongs to these pixels, wherever they are.
-- - image_id is where the label is attached now (a row with that content), NULL while no file in the
--   library has the content; missing_since says since when (the label is kept, never deleted for it).
-- - last_path is the photo's path, or its last known one, to show the user what a missing label was on.
-- - A label made on a photo without a content hash (a failed file, before those were refused) falls back
--   to its path: it comes back when a photo appears at last_path.
-- The triggers below keep this true whoever deletes, inserts or updates images, as the change-log
-- triggers do for the index: no writer can forget it.

CREATE TABLE labeled_pairs_v3 (
  id            INTEGER PRIMARY KEY,
  content_hash  TEXT,
  image_id      INTEGER REFERENCES images (id) ON DELETE SET NULL,
  last_path     TEXT NOT NULL,
  missing_since INTEGER,
  caption       TEXT NOT NULL CHECK (length(caption) > 0),
  split         TEXT NOT NULL CHECK (split IN ('train', 'val')),
  created_at    INTEGER NOT NULL
) STRICT;

-- Every label moves, with its id (what API clients and the CLI hold on to), split and time; even one whose
-- row is somehow gone (foreign keys were off at some point) is kept, as missing.
INSERT INTO labeled_pairs_v3 (id, content_hash, image_id, last_path, missing_since, caption, split, created_at)
  SELECT p.id, i.content_hash, i.id, coalesce(i.path, ''),
         CASE WHEN i.id IS NULL THEN CAST(unixepoch('subsec') * 1000 AS INTEGER) END, p.caption, p.split, p.created_at
  FROM labeled_pairs p LEFT JOIN images i ON i.id = p.image_id;

DROP TABLE labeled_pairs;
ALTER TABLE labeled_pairs_v3 RENAME TO labeled_pairs;
CREATE INDEX labeled_pairs_image ON labeled_pairs (image_id);
CREATE INDEX labeled_pairs_content ON labeled_pairs (content_hash);
-- The labels waiting for their photo, found by path when they have no content hash.
CREATE INDEX labeled_pairs_missing ON labeled_pairs (last_path) WHERE image_id IS NULL;

-- A row leaving (deleted, swept, its folder removed): its labels move to another file with the same
-- content (an indexed one first), or are kept as missing. BEFORE: the row is still there to read.
CREATE TRIGGER images_labels_detach BEFORE DELETE ON images
BEGIN
  UPDATE labeled_pairs SET
      image_id = (SELECT c.id FROM images c
        WHERE c.content_hash = OLD.content_hash AND c.id <> OLD.id AND c.status IN ('indexed', 'offline')
        ORDER BY c.status = 'indexed' DESC, c.id LIMIT 1),
      last_path = coalesce((SELECT c.path FROM images c
        WHERE c.content_hash = OLD.content_hash AND c.id <> OLD.id AND c.status IN ('indexed', 'offline')
        ORDER BY c.status = 'indexed' DESC, c.id LIMIT 1), OLD.path),
      missing_since = CASE WHEN EXISTS (SELECT 1 FROM images c
        WHERE c.content_hash = OLD.content_hash AND c.id <> OLD.id AND c.status IN ('indexed', 'offline'))
        THEN NULL ELSE CAST(unixepoch('subsec') * 1000 AS INTEGER) END
    WHERE image_id = OLD.id;
END;

-- Content arriving (a new row, or a row that turns indexed or gets new content): labels waiting for it,
-- or attached to a copy that is offline, attach to it.
CREATE TRIGGER images_labels_attach AFTER INSERT ON images
WHEN NEW.status IN ('indexed', 'offline')
BEGIN
  UPDATE labeled_pairs SET image_id = NEW.id, last_path = NEW.path, missing_since = NULL
  WHERE (image_id IS NULL AND (content_hash = NEW.content_hash OR (content_hash IS NULL AND last_path = NEW.path)))
     OR (NEW.status = 'indexed' AND content_hash = NEW.content_hash
         AND image_id IN (SELECT c.id FROM images c WHERE c.content_hash = NEW.content_hash AND c.status = 'offline'));
END;

-- A photo edited in place (same row, new content) is still the photo the user labeled: its labels follow
-- the row and take the new content as their key. A row that failed keeps its labels' last good key.
CREATE TRIGGER images_labels_content AFTER UPDATE OF content_hash ON images
WHEN NEW.content_hash IS NOT NULL AND OLD.content_hash IS NOT NEW.content_hash
BEGIN
  UPDATE labeled_pairs SET content_hash = NEW.content_hash WHERE image_id = NEW.id;
END;

CREATE TRIGGER images_labels_reattach AFTER UPDATE OF status, content_hash, path ON images
WHEN NEW.status IN ('indexed', 'offline')
BEGIN
  UPDATE labeled_pairs SET image_id = NEW.id, last_path = NEW.path, missing_since = NULL
  WHERE (image_id IS NULL AND (content_hash = NEW.content_hash OR (content_hash IS NULL AND last_path = NEW.path)))
     OR (NEW.status = 'indexed' AND content_hash = NEW.content_hash
         AND image_id IN (SELECT c.id FROM images c WHERE c.content_hash = NEW.content_hash AND c.status = 'offline'));
END;

-- A moved row keeps its labels; their path follows it.
CREATE TRIGGER images_labels_path AFTER UPDATE OF path ON images
BEGIN
  UPDATE labeled_pairs SET last_path = NEW.path WHERE image_id = NEW.id;
END;

-- Content no row uses any more, since when, and what it is (width, height, format: a file found again
-- with this content is then written without being decoded). Its embeddings and thumbnail are kept for a
-- while (IngestStore.collectGarbage): a folder removed and added back, or a share that returns, finds them
-- and nothing is encoded again. Content a label is keyed by keeps them for as long as the label exists.
CREATE TABLE orphaned_content (
  content_hash TEXT PRIMARY KEY,
  since        INTEGER NOT NULL,
  width        INTEGER,
  height       INTEGER,
  format       TEXT
) STRICT;
INSERT OR IGNORE INTO orphaned_content (content_hash, since)
  SELECT DISTINCT e.content_hash, CAST(unixepoch('subsec') * 1000 AS INTEGER) FROM embeddings e
  WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.content_hash = e.content_hash);

-- The last row with some content leaving: the content is orphaned from now on.
CREATE TRIGGER images_content_orphaned BEFORE DELETE ON images
WHEN OLD.content_hash IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM images c WHERE c.content_hash = OLD.content_hash AND c.id <> OLD.id)
BEGIN
  INSERT OR REPLACE INTO orphaned_content (content_hash, since, width, height, format)
    VALUES (OLD.content_hash, CAST(unixepoch('subsec') * 1000 AS INTEGER), OLD.width, OLD.height, OLD.format);
END;

CREATE TRIGGER images_content_back AFTER INSERT ON images
WHEN NEW.content_hash IS NOT NULL
BEGIN
  DELETE FROM orphaned_content WHERE content_hash = NEW.content_hash;
END;

CREATE TRIGGER images_content_back_update AFTER UPDATE OF content_hash ON images
WHEN NEW.content_hash IS NOT NULL
BEGIN
  DELETE FROM orphaned_content WHERE content_hash = NEW.content_hash;
END;
