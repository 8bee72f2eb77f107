/** @jsxImportSource preact */
/** Builds a read-only list page from one API list route. */
import type { PageContext } from "./context.ts";
import type { Column } from "../components/bits.tsx";
import type { Obj } from "../lib/fields.ts";
import { loadList } from "../lib/load.ts";
import { AutoTable } from "../components/auto_table.tsx";
import type { ComponentChildren } from "preact";

export function listPage(
  title: string,
  path: string,
  opts: {
    intro?: string;
    omit?: string[];
    extra?: (ctx: PageContext) => Column<Obj>[];
    after?: (ctx: PageContext, rows: Obj[]) => ComponentChildren;
  } = {},
) {
  return async (ctx: PageContext) => {
    const rows = await loadList(ctx.api, path);
    return {
      title,
      body: (
        <section>
          <h1>{title}</h1>
          {opts.intro && <p class="muted">{opts.intro}</p>}
          <AutoTable
            caption={`${rows.length} ${title.toLowerCase()}`}
            rows={rows}
            omit={opts.omit}
            extra={opts.extra?.(ctx)}
          />
          {opts.after?.(ctx, rows)}
        </section>
      ),
    };
  };
}
