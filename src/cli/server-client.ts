/**
 * `<dataDir>/server.json`: where a `clipdex serve` of this library listens. A CLI search asks that server
 * (its model is loaded already) instead of loading the model itself: ~0.1 s instead of seconds for ViT-B/32.
 * Anything wrong with the file or the server (gone, hung, another model, an error answer) means "search
 * here", never a failure: the local search then says what is wrong in its own words.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export interface ServerRecord {
  url: string;
  pid: number;
  /** The model ref the server opened the library with (an id, or a directory as given). */
  model: string;
  /** That model's directory, absolute: a CLI `--model <dir>` naming the same one is the same model. */
  modelDir: string | null;
}

const FILE = 'server.json';
/**
 * A server that has not answered a trivial request in this time is hung or swamped: search locally. Loopback
 * answers in ~2 ms; 300 ms was missed on a 2-core machine under load while the server scanned at start, and
 * loading the model here costs seconds, so the wait may be generous.
 */
const PROBE_TIMEOUT_MS = 1000;
/** The search itself: a text query on a loaded model takes ~0.1 s; past this something is wrong. */
const SEARCH_TIMEOUT_MS = 30_000;

export function serverFile(dataDir: string): string {
  return join(dataDir, FILE);
}

/** Writes server.json (whole or not at all) and returns what removes it at shutdown, if it is still ours. */
export function publishServer(dataDir: string, record: Omit<ServerRecord, 'pid'>): () => void {
  const file = serverFile(dataDir);
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify({ ...record, pid: process.pid })}\n`);
  renameSync(temp, file);
  return () => {
    // Another server of this library may have started since (and replaced the file): leave its record.
    if (readServerRecord(dataDir)?.pid === process.pid) rmSync(file, { force: true });
  };
}

export function readServerRecord(dataDir: string): ServerRecord | null {
  try {
    const r = JSON.parse(readFileSync(serverFile(dataDir), 'utf8')) as Partial<ServerRecord>;
    if (typeof r.url !== 'string' || !Number.isInteger(r.pid) || typeof r.model !== 'string') return null;
    return { url: r.url, pid: r.pid!, model: r.model, modelDir: typeof r.modelDir === 'string' ? r.modelDir : null };
  } catch {
    return null;
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The same model as this run would load: none asked (the library's), the same ref, or the same directory. */
function sameModel(record: ServerRecord, asked: string | undefined): boolean {
  if (asked === undefined || asked === record.model) return true;
  return record.modelDir !== null && existsSync(asked) && resolve(asked) === resolve(record.modelDir);
}

export interface LibraryServer {
  url: string;
  /** POSTs a JSON body; the parsed answer, or null on any failure (the caller then works locally). */
  post<T>(path: string, body: unknown): Promise<T | null>;
}

/** The running server of this library for this model, answering within PROBE_TIMEOUT_MS; else null. */
export async function findServer(dataDir: string, model: string | undefined): Promise<LibraryServer | null> {
  const record = readServerRecord(dataDir);
  if (!record || !running(record.pid) || !sameModel(record, model)) return null;
  const headers: Record<string, string> = { accept: 'application/json' };
  // Bound beyond loopback, the API wants its token (kept in the data dir, readable by its user only).
  const tokenFile = join(dataDir, 'server-token');
  if (existsSync(tokenFile)) {
    try {
      headers.authorization = `Bearer ${readFileSync(tokenFile, 'utf8').trim()}`;
    } catch {
      return null;
    }
  }
  const request = async <T>(path: string, init: RequestInit, timeoutMs: number): Promise<T | null> => {
    try {
      const res = await fetch(new URL(path, record.url), { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) }, signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) return null;
      return (await res.json()) as T;
    } catch {
      return null;
    }
  };
  // The roots: one small table read, so an answer says the server runs, is ours to ask, and is not hung.
  if ((await request('/api/roots', { method: 'GET' }, PROBE_TIMEOUT_MS)) === null) return null;
  return {
    url: record.url,
    post: (path, body) => request(path, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }, SEARCH_TIMEOUT_MS),
  };
}
