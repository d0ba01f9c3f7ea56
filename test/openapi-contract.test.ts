/**
 * /api/openapi.json is generated from the routers' own declarations; this holds it to what the app serves:
 * every route mounted is described and every route described is mounted, and a request schema in the
 * document refuses what the route refuses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Library } from '../src/library/library.js';
import { createApp } from '../src/server/app.js';
import { tinyModel } from './helpers/library-fixture.js';

type Doc = { openapi: string; paths: Record<string, Record<string, { parameters?: { name: string; in: string; schema: object }[]; requestBody?: { content: Record<string, { schema: object }> } }>> };

let tmp: string;
let library: Library;
let server: Server;
let url: string;
let mounted: string[];
let doc: Doc;

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** `METHOD /path` of every route in the app's router and the routers mounted on it, in OpenAPI's path form. */
function routesOf(stack: Layer[]): string[] {
  return stack.flatMap((layer) => {
    if (layer.route) {
      const path = layer.route.path.replace(/:(\w+)/g, '{$1}');
      return Object.keys(layer.route.methods).map((m) => `${m.toUpperCase()} ${path}`);
    }
    return layer.handle?.stack ? routesOf(layer.handle.stack) : [];
  });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-openapi-'));
  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const { app } = createApp({ library, access: { host: '127.0.0.1', port, token: null } });
  server.on('request', app);
  url = `http://127.0.0.1:${port}`;
  mounted = routesOf((app as unknown as { router: { stack: Layer[] } }).router.stack);
  doc = (await (await fetch(`${url}/api/openapi.json`)).json()) as Doc;
}, 120_000);

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('the OpenAPI document and the routes', () => {
  it('describes exactly the routes the app mounts', () => {
    const described = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(mounted.length).toBeGreaterThan(20);
    expect([...mounted].sort()).toEqual([...described].sort());
    expect(doc.openapi).toBe('3.1.0');
  });

  it('has request schemas that refuse what the routes refuse', async () => {
    const trainSchema = z.fromJSONSchema(doc.paths['/api/training']!.post!.requestBody!.content['application/json']!.schema as never);
    for (const body of [{ epochs: 2.5 }, { batchSize: 1 }, { valFraction: 0.95 }, { learningRate: 0 }, { nonsense: 1 }]) {
      expect(trainSchema.safeParse(body).success, JSON.stringify(body)).toBe(false);
      const res = await fetch(`${url}/api/training`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENT');
    }
    expect(trainSchema.safeParse({ epochs: 3, valFraction: 0.5 }).success).toBe(true);

    const limit = doc.paths['/api/search']!.get!.parameters!.find((p) => p.name === 'limit')!;
    const limitSchema = z.fromJSONSchema(limit.schema as never);
    for (const bad of [0, 501, 2.5]) {
      expect(limitSchema.safeParse(bad).success, String(bad)).toBe(false);
      const res = await fetch(`${url}/api/search?q=dog&limit=${bad}`);
      expect(res.status, String(bad)).toBe(400);
    }
    expect(limitSchema.safeParse(20).success).toBe(true);
  });

  it('describes the label fields and the labels a training run leaves out', () => {
    const schemas = (doc as unknown as { components: { schemas: Record<string, { properties: Record<string, unknown> }> } }).components.schemas;
    expect(Object.keys(schemas.Label!.properties)).toEqual(expect.arrayContaining(['id', 'imageId', 'contentHash', 'caption', 'split', 'lastPath', 'missingSince', 'path', 'photo']));
    expect(Object.keys(schemas.TrainResult!.properties)).toEqual(expect.arrayContaining(['skippedPairs', 'skipped']));
    expect(Object.keys(schemas.SplitPreview!.properties)).toEqual(expect.arrayContaining(['train', 'val', 'skipped']));
  });
});
