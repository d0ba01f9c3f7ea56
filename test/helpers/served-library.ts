/**
 * A library opened and served over real HTTP for one describe block, with the JSON calls its tests make.
 * Registers its own beforeAll/afterAll, so a suite says only which library it serves.
 */
import { afterAll, beforeAll } from 'vitest';
import { Library, type OpenLibraryOptions } from '../../src/library/library.js';
import { startServer, type RunningServer } from '../../src/server/server.js';

export interface ApiAnswer {
  status: number;
  /** Whatever JSON the route answers. */
  body: any;
}

export interface ServedLibrary {
  readonly library: Library;
  readonly server: RunningServer;
  /** A request to the served API, its JSON answer parsed. */
  api(path: string, init?: RequestInit): Promise<ApiAnswer>;
  /** A POST of `body` as JSON. */
  postJson(path: string, body: unknown): Promise<ApiAnswer>;
}

export function serveLibrary(options: () => OpenLibraryOptions): ServedLibrary {
  let library: Library | undefined;
  let server: RunningServer | undefined;
  beforeAll(async () => {
    library = await Library.open(options());
    server = await startServer({ library, port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await library?.close();
  });
  const served: ServedLibrary = {
    get library() {
      if (!library) throw new Error('the library is served from beforeAll on');
      return library;
    },
    get server() {
      if (!server) throw new Error('the library is served from beforeAll on');
      return server;
    },
    async api(path, init = {}) {
      const res = await fetch(`${served.server.url}${path}`, init);
      return { status: res.status, body: await res.json() };
    },
    postJson(path, body) {
      return served.api(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    },
  };
  return served;
}
