import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { sendError } from './http-errors.js';

export interface AccessOptions {
  /** Address the server is bound to. */
  host: string;
  port: number;
  /** Required on every API call when bound beyond loopback; null on loopback. */
  token: string | null;
  /** Extra host names the server may be reached by (e.g. `photos.local`), for the Host check. */
  allowedHosts?: string[];
}

export const TOKEN_COOKIE = 'clipdex_token';

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

export function generateToken(): string {
  return randomBytes(24).toString('base64url');
}

/** `Host` values this server answers to: what a browser sends when it really means us. */
export function allowedHostHeaders(options: AccessOptions): Set<string> | null {
  const names = new Set<string>();
  const add = (name: string) => {
    const n = name.toLowerCase();
    const bracketed = isIP(n) === 6 ? `[${n}]` : n;
    names.add(`${bracketed}:${options.port}`);
    if (options.port === 80) names.add(bracketed);
  };
  if (isLoopback(options.host)) {
    for (const n of ['localhost', '127.0.0.1', '::1']) add(n);
  } else if (options.host === '0.0.0.0' || options.host === '::') {
    // Reachable by any name the network gives it; the token is what protects it then.
    if (!options.allowedHosts?.length) return null;
  } else {
    add(options.host);
  }
  for (const h of options.allowedHosts ?? []) add(h);
  return names;
}

/**
 * DNS rebinding defence: a page on evil.example that rebinds its name to 127.0.0.1 still sends
 * `Host: evil.example`, which is refused. Cross-site requests are refused by Origin and by the
 * browser's Sec-Fetch-Site, so another site can neither drive the API (CSRF) nor read from it.
 */
export function hostAndOriginGuard(options: AccessOptions): RequestHandler {
  const hosts = allowedHostHeaders(options);
  return (req: Request, res: Response, next: NextFunction) => {
    const host = (req.headers.host ?? '').toLowerCase();
    if (hosts && !hosts.has(host)) {
      return sendError(res, 403, 'FORBIDDEN_HOST', `Host ${JSON.stringify(req.headers.host ?? '')} is not one this server answers to`);
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let originHost: string | null = null;
      try {
        originHost = new URL(origin).host.toLowerCase();
      } catch {
        originHost = null;
      }
      if (originHost !== host) return sendError(res, 403, 'FORBIDDEN_ORIGIN', `requests from ${origin} are not allowed`);
    } else if (origin === 'null') {
      return sendError(res, 403, 'FORBIDDEN_ORIGIN', 'requests from an opaque origin are not allowed');
    }
    if (req.headers['sec-fetch-site'] === 'cross-site') {
      return sendError(res, 403, 'FORBIDDEN_ORIGIN', 'cross-site requests are not allowed');
    }
    next();
  };
}

function sameToken(given: string | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function cookieValue(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k !== name) continue;
    try {
      return decodeURIComponent(v.join('='));
    } catch {
      // A malformed escape (`%E0%A4%A`) is no token, not an internal error.
      return undefined;
    }
  }
  return undefined;
}

/**
 * The login redirect's target: the requested path, as a path on this server. `//evil.example/` (or `/\\evil…`,
 * which browsers read the same way) is a scheme-relative URL that leaves the site: an open redirect.
 */
function samePagePath(path: string): string {
  return `/${path.replace(/^[/\\]+/, '')}`;
}

/**
 * With a token configured, every request must carry it: `Authorization: Bearer …` for scripts, or the
 * HttpOnly SameSite=Strict cookie the browser gets by opening `/?token=…` once (images and the event
 * stream cannot send headers). The token in the URL is swapped for the cookie at once and redirected away.
 */
export function tokenGuard(token: string | null): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (token === null) return next();
    const fromQuery = typeof req.query.token === 'string' ? req.query.token : undefined;
    if (fromQuery !== undefined && req.method === 'GET' && !req.path.startsWith('/api/')) {
      if (!sameToken(fromQuery, token)) return sendError(res, 401, 'UNAUTHORIZED', 'wrong token');
      res.setHeader('Set-Cookie', `${TOKEN_COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);
      return res.redirect(303, samePagePath(req.path));
    }
    const auth = req.headers.authorization;
    const bearer = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    if (sameToken(bearer, token) || sameToken(cookieValue(req, TOKEN_COOKIE), token)) return next();
    return sendError(
      res,
      401,
      'UNAUTHORIZED',
      'this server needs its access token: send `Authorization: Bearer <token>`, or open the page once as /?token=<token>',
    );
  };
}
