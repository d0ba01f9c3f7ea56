import { ClipdexError } from '../errors.js';
import type { ModelSource, RemoteFile } from './manifest.js';

/** Written into the target dir once every file is verified; absent while a pull is unfinished. */
export const COMPLETE_MARKER = '.complete.json';


export function normalizeEndpoint(endpoint: string): string {
  let url: URL | null = null;
  try {
    url = new URL(endpoint);
  } catch {
    url = null;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new ClipdexError('INVALID_ARGUMENT', `Hub endpoint ${JSON.stringify(endpoint)} is not an http(s) URL (check HF_ENDPOINT).`, {
      details: { endpoint },
    });
  }
  return endpoint.replace(/\/+$/, '');
}

/** Checks the whole source before any request, so a bad manifest cannot write outside the target. */
export function validateSource(source: ModelSource): RemoteFile[] {
  function fail(message: string, details: Record<string, unknown> = {}): never {
    throw new ClipdexError('INVALID_ARGUMENT', `Invalid model source ${JSON.stringify(source?.repo)}: ${message}.`, {
      details: { repo: source?.repo, ...details },
    });
  }
  if (typeof source?.repo !== 'string' || !/^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/.test(source.repo) || source.repo.includes('..')) {
    fail('the repository must look like "owner/name"');
  }
  if (typeof source.revision !== 'string' || unsafeRelative(source.revision)) {
    fail(`revision ${JSON.stringify(source.revision)} is not a plain branch, tag or commit`, { revision: source.revision });
  }
  if (!Array.isArray(source.files) || source.files.length === 0) fail('it lists no files');

  const seen = new Set<string>();
  return source.files.map((file) => {
    const path = file?.path;
    if (typeof path !== 'string' || unsafeRelative(path)) {
      fail(`file path ${JSON.stringify(path)} must be relative, '/'-separated and stay inside the model directory`, { path });
    }
    const name = path.split('/').pop()!;
    if (name === COMPLETE_MARKER || name.includes('.partial')) fail(`file name ${JSON.stringify(name)} is reserved for download bookkeeping`, { path });
    if (seen.has(path)) fail(`file ${path} is listed twice`, { path });
    seen.add(path);
    if (file.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(file.sha256)) {
      fail(`sha256 of ${path} is not 64 hex digits`, { path, sha256: file.sha256 });
    }
    if (file.size !== undefined && !(Number.isSafeInteger(file.size) && file.size >= 0)) {
      fail(`size of ${path} is not a byte count`, { path, size: file.size });
    }
    const out: RemoteFile = { path };
    if (file.sha256 !== undefined) out.sha256 = file.sha256.toLowerCase();
    if (file.size !== undefined) out.size = file.size;
    return out;
  });
}

function unsafeRelative(value: string): boolean {
  return (
    value === '' ||
    // eslint-disable-next-line no-control-regex
    /[\u0000-\u001f\\:]/.test(value) ||
    value.startsWith('/') ||
    value.split('/').some((part) => part === '' || part === '.' || part === '..')
  );
}
