/**
 * Declares an API route once: the same call mounts the handler on a router and registers its path, its
 * request schemas and its responses for /api/openapi.json, and the schemas it documents are the ones that
 * parse the request before the handler runs. The contract cannot drift from the code.
 */
import type { OpenAPIRegistry, ResponseConfig } from '@asteasolutions/zod-to-openapi';
import express, { type Request, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type Schema = z.ZodObject | z.ZodPipe | undefined;
type BodySchema = z.ZodType | undefined;
type Out<T> = T extends z.ZodType ? z.output<T> : undefined;

export interface RouteSpec<P extends Schema, Q extends Schema, B extends BodySchema> {
  summary: string;
  description?: string;
  /** Path parameters, named as the path writes them ({id}). */
  params?: P;
  query?: Q;
  /** The JSON body. */
  body?: B;
  /** Where the body is read from; default the parsed JSON (`req.body`). */
  bodyOf?: (req: Request) => unknown;
  /** Other media types the body may come as, described by hand (a multipart upload). */
  otherBodies?: Record<string, { schema: Record<string, unknown> }>;
  responses: Record<number, ResponseConfig>;
  /** Middleware before the request is parsed (upload admission, the multipart reader). */
  before?: RequestHandler[];
}

export interface RouteInput<P extends Schema, Q extends Schema, B extends BodySchema> {
  params: Out<P>;
  query: Out<Q>;
  body: Out<B>;
}

export type RouteHandler<P extends Schema, Q extends Schema, B extends BodySchema> = (input: RouteInput<P, Q, B>, req: Request, res: Response) => unknown;

/** One resource's routes: a router to mount on the app, declared into the app's OpenAPI registry. */
export class ApiRoutes {
  readonly router = express.Router();

  constructor(private readonly registry: OpenAPIRegistry) {}

  get<P extends Schema = undefined, Q extends Schema = undefined>(path: string, spec: RouteSpec<P, Q, undefined>, handler: RouteHandler<P, Q, undefined>): this {
    return this.route('get', path, spec, handler);
  }

  post<P extends Schema = undefined, Q extends Schema = undefined, B extends BodySchema = undefined>(path: string, spec: RouteSpec<P, Q, B>, handler: RouteHandler<P, Q, B>): this {
    return this.route('post', path, spec, handler);
  }

  put<P extends Schema = undefined, B extends BodySchema = undefined>(path: string, spec: RouteSpec<P, undefined, B>, handler: RouteHandler<P, undefined, B>): this {
    return this.route('put', path, spec, handler);
  }

  patch<P extends Schema = undefined, B extends BodySchema = undefined>(path: string, spec: RouteSpec<P, undefined, B>, handler: RouteHandler<P, undefined, B>): this {
    return this.route('patch', path, spec, handler);
  }

  delete<P extends Schema = undefined>(path: string, spec: RouteSpec<P, undefined, undefined>, handler: RouteHandler<P, undefined, undefined>): this {
    return this.route('delete', path, spec, handler);
  }

  /** `path` as OpenAPI writes it (`/api/images/{id}`); Express gets `/api/images/:id`. */
  private route<P extends Schema, Q extends Schema, B extends BodySchema>(method: Method, path: string, spec: RouteSpec<P, Q, B>, handler: RouteHandler<P, Q, B>): this {
    const { params, query, body } = spec;
    this.registry.registerPath({
      method,
      path,
      summary: spec.summary,
      ...(spec.description ? { description: spec.description } : {}),
      request: {
        ...(params ? { params } : {}),
        ...(query ? { query } : {}),
        ...(body ? { body: { content: { 'application/json': { schema: body }, ...spec.otherBodies } } } : {}),
      },
      responses: spec.responses,
    });
    // Parsed in this order (path, query, body): the first bad part is the one reported. Express 5 passes a
    // rejected promise to the error handler, so async handlers need no wrapper.
    const parsed: RequestHandler = (req, res) => {
      const input = {
        params: params?.parse(req.params),
        query: query?.parse(req.query),
        body: body?.parse(spec.bodyOf ? spec.bodyOf(req) : req.body),
      } as RouteInput<P, Q, B>;
      return handler(input, req, res);
    };
    this.router[method](path.replace(/\{(\w+)\}/g, ':$1'), ...(spec.before ?? []), parsed);
    return this;
  }
}
