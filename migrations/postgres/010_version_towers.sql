-- clipdex schema 10 (Postgres), the twin of migrations/010_version_towers.sql: trained text towers in parts
-- of 16 MiB (a bytea comes back as hex text: a 250 MB tower in one value would be a 500 MB string), so
-- every machine can search with a version trained on any one of them.
CREATE TABLE version_towers (
  sha256 text NOT NULL,
  part   bigint NOT NULL CHECK (part >= 0),
  bytes  bytea NOT NULL,
  PRIMARY KEY (sha256, part)
);
