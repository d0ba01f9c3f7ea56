-- clipdex schema 5: file names that are not UTF-8. Applied inside a transaction; no BEGIN/COMMIT.

-- Linux names are bytes; old NAS shares and archives hold Latin-1 ones (`caf\xe9.jpg`). `path` stays the
-- key and what people read (such names shown decoded as Latin-1, see src/ingest/raw-path.ts); path_bytes
-- holds the path exactly as the file system spells it, and is what clipdex opens. NULL when the path is
-- valid UTF-8, which is every path of most libraries: then `path` is exact.
ALTER TABLE images ADD COLUMN path_bytes BLOB;
ALTER TABLE ingest_queue ADD COLUMN path_bytes BLOB;
