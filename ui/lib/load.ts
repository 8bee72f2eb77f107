/** Loading whole lists from the admin API, page by page (bounded). */
import type { ApiClient } from "./api.ts";
import { list, type Obj, str } from "./fields.ts";

/** Follows `next_cursor` up to `maxPages` pages of `limit` items. */
export async function loadAll(
  api: ApiClient,
  path: string,
  opts: { limit?: number; maxPages?: number } = {},
): Promise<{ items: Obj[]; total: number | null; more: boolean }> {
  const limit = opts.limit ?? 1000;
  const items: Obj[] = [];
  let cursor = "";
  let total: number | null = null;
  for (let page = 0; page < (opts.maxPages ?? 10); page++) {
    const sep = path.includes("?") ? "&" : "?";
    const body = await api.get(
      `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
    );
    items.push(...list(body));
    const t = (body as Obj)?.total;
    if (typeof t === "number") total = t;
    cursor = str(body, "nextCursor");
    if (!cursor) return { items, total, more: false };
  }
  return { items, total, more: true };
}

/** One list answer's items (lists without pagination). */
export async function loadList(api: ApiClient, path: string): Promise<Obj[]> {
  return list(await api.get(path));
}
