import type { ModelSwitcher } from '../../ingest/model-switch.js';
import type { Library } from '../../library/library.js';
import type { QueryEngine } from '../../search/query-engine.js';
import type { AdapterService } from '../../train/adapter-service.js';
import type { EventHub } from '../event-hub.js';
import type { IngestService } from '../ingest-service.js';
import type { TrainingJobs } from '../training-jobs.js';

/** The services the routers are thin over, made once per app. */
export interface RouteContext {
  library: Library;
  engine: QueryEngine;
  ingest: IngestService | undefined;
  adapters: AdapterService;
  jobs: TrainingJobs;
  events: EventHub;
  /** The background model switch; only `clipdex serve` runs one. */
  modelSwitch: ModelSwitcher | undefined;
}
