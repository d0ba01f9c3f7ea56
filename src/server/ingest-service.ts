/** What the server needs from the ingestion engine (which runs in the same process). */
export interface IngestService {
  /** JSON-serialisable progress: phase, files done/total, rate, errors so far. */
  status(): Record<string, unknown>;
  addRoot(path: string): Promise<{ id: number; path: string }>;
  removeRoot(id: number): Promise<boolean>;
  /** Accepts the folder a retargeted root's path now leads to (see ingest/root-pin.ts); undefined: no such root. */
  confirmRoot?(id: number): Promise<{ id: number; path: string } | undefined>;
  /** Turns reading the text in photos on or off now and keeps it as the library's setting; answers the OCR status. */
  setOcrEnabled?(on: boolean): Promise<Record<string, unknown>>;
  onEvent(listener: (event: { type: string } & Record<string, unknown>) => void): () => void;
}
