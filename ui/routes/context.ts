/** What a page module gets, and what it gives back. */
import type { VNode } from "preact";
import type { ApiClient } from "../lib/api.ts";

export interface PageContext {
  req: Request;
  url: URL;
  params: Record<string, string>;
  api: ApiClient;
  /** CSRF token of this session (for forms and islands). */
  csrf: string;
  /** Who is signed in (e-mail), undefined on public pages. */
  user?: string;
  /** Version of the static assets (for asset URLs). */
  assets: string;
}

export interface Page {
  title: string;
  // deno-lint-ignore no-explicit-any
  body: VNode<any>;
  status?: number;
}

export type PageHandler = (ctx: PageContext) => Promise<Page | Response>;

export function redirect(to: string, status = 303): Response {
  return new Response(null, { status, headers: { location: to } });
}
