-- clipdex schema 5, PostgreSQL dialect. Mirrors migrations/005_path_bytes.sql: the path exactly as the file
-- system spells it, for names that are not UTF-8. Applied inside a transaction; no BEGIN/COMMIT.
--
-- Where the dialects differ, and why: BLOB -> bytea. It must be bytes on Postgres too: text there cannot hold
-- invalid UTF-8 at all (SQLite's TEXT would have stored it, which is why `path` is the decoded form).

ALTER TABLE images ADD COLUMN path_bytes bytea;
ALTER TABLE ingest_queue ADD COLUMN path_bytes bytea;
