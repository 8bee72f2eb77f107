/**
 * `deno task bench [section-filter]`: runs the benchmark modules and rewrites
 * their sections of BENCHMARKS.md, keeping sections of modules not run.
 */
import type { BenchModule } from "./harness.ts";
import { modules } from "./modules.ts";
import { renderSection, replaceSections } from "./report.ts";

const filter = Deno.args[0]?.toLowerCase();
const chosen: BenchModule[] = modules.filter((m) =>
  !filter || m.section.toLowerCase().includes(filter)
);
if (chosen.length === 0) {
  console.error(
    `no benchmark section matches "${filter}"; sections: ${
      modules.map((m) => m.section).join(", ")
    }`,
  );
  Deno.exit(2);
}

const machine =
  `${Deno.build.os}/${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`;
const date = new Date().toISOString().slice(0, 10);
const rendered = new Map<string, string>();
for (const m of chosen) {
  console.error(`bench: ${m.section} ...`);
  const figures = await m.run();
  const text = renderSection(m.section, figures, machine, date, m.notes);
  console.log(text);
  rendered.set(m.section, text);
}

const path = new URL("../../BENCHMARKS.md", import.meta.url);
let existing = "";
try {
  existing = await Deno.readTextFile(path);
} catch {
  // first run: no file yet
}
await Deno.writeTextFile(path, replaceSections(existing, rendered));
console.error(`bench: wrote ${path.pathname}`);
