/**
 * core/ is web-standards only: no Deno.*, no node: modules, no npm packages
 * beyond the approved pure ones, and nothing from the programs built on it.
 */
import assert from "node:assert/strict";

const CORE = new URL("../../core/", import.meta.url);
const APPROVED = [
  /^@peculiar\/x509$/,
  /^@peculiar\/webcrypto$/,
  /^@noble\/[a-z-]+(\/.*)?$/,
  /^hash-wasm$/,
  /^cbor2?$/,
];

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}

/** Returns the boundary violations of one source file. */
export function violations(path: string, src: string): string[] {
  const code = stripComments(src);
  const out: string[] = [];
  if (/\bDeno\s*\.|\bDeno\s*\[/.test(code)) out.push(`${path}: uses the Deno namespace`);
  if (/\brequire\s*\(/.test(code)) out.push(`${path}: uses require()`);
  const specs = [
    ...code.matchAll(/\bfrom\s*["']([^"']+)["']/g),
    ...code.matchAll(/\bimport\s*\(\s*["']([^"']+)["']/g),
    ...code.matchAll(/\bimport\s*["']([^"']+)["']/g),
  ].map((m) => m[1]);
  for (const spec of specs) {
    if (spec.startsWith(".")) {
      const target = new URL(spec, new URL(path, CORE)).href;
      if (!target.startsWith(CORE.href)) out.push(`${path}: imports ${spec} from outside core/`);
      continue;
    }
    const bare = spec.replace(/^npm:\/?/, "").replace(/@[\^~]?\d[^/]*/, "");
    if (/^(node|jsr|https?|file|data):/.test(spec) || !APPROVED.some((re) => re.test(bare))) {
      out.push(`${path}: imports "${spec}", which core/ may not use`);
    }
  }
  return out;
}

async function* walk(dir: URL): AsyncGenerator<URL> {
  for await (const e of Deno.readDir(dir)) {
    const u = new URL(e.name + (e.isDirectory ? "/" : ""), dir);
    if (e.isDirectory) yield* walk(u);
    else if (/\.(ts|tsx|js|mjs)$/.test(e.name)) yield u;
  }
}

Deno.test("core boundary: the checker catches every kind of violation", () => {
  const bad = [
    `const x = Deno.env.get("A");`,
    `import fs from "node:fs";`,
    `import x from "npm:left-pad@1";`,
    `import { y } from "../../controller/db.ts";`,
    `const m = await import("../../relay/main.ts");`,
    `import "jsr:@std/assert";`,
    `import grpc from "@grpc/grpc-js";`,
    `export { z } from "../../agent/x.ts";`,
  ];
  for (const src of bad) assert.equal(violations("pki/x.ts", src).length, 1, src);
  const good = [
    `import * as x509 from "@peculiar/x509";`,
    `import { x25519 } from "@noble/curves/ed25519.js";`,
    `import { argon2id } from "hash-wasm";`,
    `import { encode } from "cbor2";`,
    `import { a } from "./b.ts";`,
    `import { c } from "../encoding.ts";`,
    `// Deno.exit is mentioned only in a comment\nconst s = "no";`,
  ];
  for (const src of good) assert.deepEqual(violations("pki/x.ts", src), [], src);
});

Deno.test("core boundary: no file under core/ breaks the boundary", async () => {
  const found: string[] = [];
  let files = 0;
  for await (const url of walk(CORE)) {
    files++;
    found.push(...violations(url.href.slice(CORE.href.length), await Deno.readTextFile(url)));
  }
  assert.ok(files > 5, `only ${files} files found under core/`);
  assert.deepEqual(found, []);
});
