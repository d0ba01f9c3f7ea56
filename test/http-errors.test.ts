/**
 * The API's error edge: damaged database pages first read by a query (after the library opened fine) are
 * reported as what they are, with the way back, not as an internal error.
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { errorHandler } from '../src/server/http-errors.js';

describe('errorHandler', () => {
  it('answers 503 LIBRARY_DAMAGED naming the database, for SQLite corruption errors (wrapped or not)', async () => {
    const logged: string[] = [];
    const app = express();
    const corrupt = Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT_INDEX' });
    app.get('/raw', () => {
      throw corrupt;
    });
    app.get('/wrapped', () => {
      throw new Error('search failed', { cause: corrupt });
    });
    app.get('/bug', () => {
      throw new Error('a real bug');
    });
    app.use(errorHandler((m) => logged.push(m), '/data/library.db'));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const path of ['/raw', '/wrapped']) {
        const res = await fetch(`${base}${path}`);
        expect(res.status, path).toBe(503);
        const body = (await res.json()) as { error: { code: string; message: string } };
        expect(body.error.code).toBe('LIBRARY_DAMAGED');
        expect(body.error.message).toContain('/data/library.db');
        expect(body.error.message).toMatch(/\.recover/);
      }
      // The control: anything else stays an internal error that says nothing internal.
      const bug = await fetch(`${base}/bug`);
      expect(bug.status).toBe(500);
      expect(((await bug.json()) as { error: { code: string } }).error.code).toBe('INTERNAL');
      expect(logged.some((m) => m.includes('LIBRARY') || m.includes('damaged'))).toBe(true);
    } finally {
      server.close();
    }
  });
});
