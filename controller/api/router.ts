/**
 * Declares admin API routes once: each declaration registers the OpenAPI
 * route (schemas for params, query, body and the success response, plus the
 * common error responses), the access guard that runs before validation,
 * and an entry in `routes` (the scope-matrix test walks it).
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { type Access, type AccessOptions, type Env, guard } from "./access.ts";
import { ErrorSchema } from "./schemas.ts";

type Method = "get" | "post" | "patch" | "delete";

export interface RouteInfo {
  method: Method;
  /** OpenAPI form: `/api/nodes/{id}`. */
  path: string;
  access: Access;
}

export interface RouteDef<P, Q, B> {
  method: Method;
  path: string;
  access: Access;
  summary: string;
  tag: string;
  params?: P;
  query?: Q;
  body?: B;
  /** The success response: JSON with `schema`, or another content type. */
  ok: { status: number; schema?: z.ZodType; contentType?: string; description?: string };
  /** Error answers of this route besides the common ones. */
  errors?: Record<number, string>;
}

type Out<T> = T extends z.ZodType ? z.output<T> : undefined;

export type RouteHandler<P, Q, B> = (
  c: Context<Env>,
  input: { params: Out<P>; query: Out<Q>; body: Out<B> },
) => Response | Promise<Response>;

const ERRORS: Record<number, string> = {
  400: "Invalid input (error.field names it)",
  401: "Not signed in, or a bad token",
  403: "Not allowed (scope, CSRF, origin)",
  404: "No such resource",
  409: "Stale version (current holds the resource as it is now) or a clash",
  413: "Request body too large",
  415: "Request body is not JSON",
  428: "A write must name the version it is based on (If-Match or version)",
  429: "Too many failed sign-ins (Retry-After)",
  501: "Not available in this build yet",
  503: "Busy; try again",
};

export class Router {
  readonly routes: RouteInfo[] = [];

  constructor(readonly app: OpenAPIHono<Env>, private readonly access: AccessOptions) {}

  add<
    P extends z.ZodType | undefined = undefined,
    Q extends z.ZodType | undefined = undefined,
    B extends z.ZodType | undefined = undefined,
  >(def: RouteDef<P, Q, B>, handler: RouteHandler<P, Q, B>): void {
    const label = `${def.method.toUpperCase()} ${def.path}`;
    const okContent = def.ok.schema
      ? { "application/json": { schema: def.ok.schema } }
      : def.ok.contentType
      ? { [def.ok.contentType]: { schema: z.string() } }
      : undefined;
    const responses: Record<number, { description: string; content?: unknown }> = {
      [def.ok.status]: { description: def.ok.description ?? "Success", content: okContent },
    };
    for (const [code, description] of Object.entries({ ...ERRORS, ...def.errors })) {
      responses[Number(code)] = {
        description,
        content: { "application/json": { schema: ErrorSchema } },
      };
    }
    const security: Record<string, string[]>[] = def.access === "public"
      ? []
      : def.access === "pending" || def.access === "session"
      ? [{ cookie: [] }]
      : [{ bearer: [...def.access] }, { cookie: [] }];
    const route = createRoute({
      method: def.method,
      path: def.path,
      summary: def.summary,
      tags: [def.tag],
      security,
      middleware: [guard(this.access, def.access, label)] as never,
      request: {
        ...(def.params ? { params: def.params } : {}),
        ...(def.query ? { query: def.query } : {}),
        ...(def.body
          ? { body: { required: true, content: { "application/json": { schema: def.body } } } }
          : {}),
      } as never,
      responses: responses as never,
    });
    this.routes.push({ method: def.method, path: def.path, access: def.access });
    this.app.openapi(
      route,
      (async (c: Context<Env>) => {
        const valid = c.req as unknown as { valid(target: string): unknown };
        return await handler(c, {
          params: (def.params ? valid.valid("param") : undefined) as Out<P>,
          query: (def.query ? valid.valid("query") : undefined) as Out<Q>,
          body: (def.body ? valid.valid("json") : undefined) as Out<B>,
        });
      }) as never,
    );
  }
}
