/** What a form handler (POST) gets. */
import type { ApiClient } from "../lib/api.ts";
import type { Page } from "./context.ts";

export interface PostContext {
  req: Request;
  url: URL;
  api: ApiClient;
  form: Record<string, string>;
  params: Record<string, string>;
}

export type PostHandler = (ctx: PostContext) => Promise<Page | Response>;
