-- clipdex schema 6: reviewing duplicates. Applied inside a transaction; no BEGIN/COMMIT.

-- A photo the user hid from search (a near-duplicate kept on disk but not wanted in results): since when,
-- NULL for every photo by default. Hidden photos leave the vector index's membership, so every search,
-- find-similar and page of the library leaves them out without each asking; unhiding brings them back.
ALTER TABLE images ADD COLUMN hidden_at INTEGER;

-- Membership as migration 001 defined it, less the hidden photos.
DROP VIEW index_members;
CREATE VIEW index_members AS
  SELECT e.model_key AS model_key, i.id AS image_id, e.vector AS vector
  FROM images i JOIN embeddings e ON e.content_hash = i.content_hash
  WHERE i.status = 'indexed' AND i.hidden_at IS NULL;

-- Hiding or unhiding changes membership: the change log must hear of it like of a status change.
DROP TRIGGER images_index_update;
CREATE TRIGGER images_index_update AFTER UPDATE OF status, content_hash, id, hidden_at ON images
WHEN (OLD.status = 'indexed' OR NEW.status = 'indexed')
  AND (OLD.status IS NOT NEW.status OR OLD.content_hash IS NOT NEW.content_hash OR OLD.id IS NOT NEW.id
       OR (OLD.hidden_at IS NULL) IS NOT (NEW.hidden_at IS NULL))
BEGIN
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, OLD.id FROM vector_indexes WHERE OLD.id IS NOT NEW.id;
  INSERT INTO index_changes (model_key, image_id) SELECT model_key, NEW.id FROM vector_indexes;
END;
CREATE INDEX images_hidden ON images (hidden_at) WHERE hidden_at IS NOT NULL;

-- Photos moved into their root's .clipdex-trash folder (never deleted: clipdex does not delete a user's
-- photo). The image row leaves with the file, and `row` keeps it (JSON, every column) so that undo puts the
-- file back at `original_path` and the row back with its id: the same photo, its labels (keyed by content)
-- attached again, its embedding and thumbnail still there (trashed content is kept from garbage collection).
-- restored_at: when undo moved it back; the record stays as history.
CREATE TABLE trashed_photos (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  image_id      INTEGER NOT NULL,
  content_hash  TEXT,
  root_path     TEXT NOT NULL,
  original_path TEXT NOT NULL,
  trash_path    TEXT NOT NULL,
  row           TEXT NOT NULL CHECK (json_valid(row)),
  trashed_at    INTEGER NOT NULL,
  restored_at   INTEGER
) STRICT;
CREATE INDEX trashed_photos_content ON trashed_photos (content_hash) WHERE restored_at IS NULL;
CREATE INDEX trashed_photos_image ON trashed_photos (image_id);
