-- clipdex schema 10: the text towers of versions trained with --text-blocks, in the database, in parts. A
-- tower is a file under <dataDir>/versions/ on the machine that trained it; on a library in Postgres every
-- other machine fetches it from here (library/version-towers.ts). The embedded library keeps its towers as
-- files only and leaves this table empty; it exists so both schemas stay alike.
CREATE TABLE version_towers (
  sha256 TEXT NOT NULL,
  part   INTEGER NOT NULL CHECK (part >= 0),
  bytes  BLOB NOT NULL,
  PRIMARY KEY (sha256, part)
) STRICT;
