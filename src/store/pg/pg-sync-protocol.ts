/** The messages between a PgSyncConnection and its worker thread. */

export interface PgWorkerData {
  /** A SharedArrayBuffer of one Int32: set to 1 by the worker when a reply is posted. */
  flag: SharedArrayBuffer;
  url: string;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  applicationName: string;
}

export type PgRequest =
  | { id: number; op: 'connect' }
  | { id: number; op: 'close' }
  /** `name` makes it a server-side prepared statement, parsed and planned once per connection. */
  | { id: number; op: 'query'; text: string; values?: unknown[]; name?: string };

export type PgReply =
  | { id: number; rows: Record<string, unknown>[]; rowCount: number; error?: undefined }
  | { id: number; error: { message: string; code: string | null; detail: string | null } };
