-- clipdex schema 9: leases on the work queue. On Postgres many processes (`clipdex worker`, `serve`
-- replicas) take files from one queue: a file is claimed by one of them (`claimed_by`) until its lease runs
-- out (`lease_until`, ms since the epoch by the database's clock), so a killed worker's files return to the
-- queue by themselves. The embedded library has one process; the columns exist so both schemas stay alike.
ALTER TABLE ingest_queue ADD COLUMN claimed_by TEXT;
ALTER TABLE ingest_queue ADD COLUMN lease_until INTEGER;
CREATE INDEX ingest_queue_claimed_by ON ingest_queue (claimed_by) WHERE claimed_by IS NOT NULL;
