/** The agent's persistence: atomic documents and journaled documents (CONTRACTS.md §7.8). */
import assert from "node:assert/strict";
import { JournaledDocument, StateStore, writeFileAtomic } from "../../agent/store.ts";

interface Doc {
  items: string[];
}
type Entry = { add: string } | { del: string };
const apply = (d: Doc, e: Entry): Doc =>
  "add" in e ? { items: [...d.items, e.add] } : { items: d.items.filter((x) => x !== e.del) };

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "pharos-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("store: atomic writes are 0600, replace whole files, leave no temp file", () =>
  withDir(async (dir) => {
    await writeFileAtomic(`${dir}/a.json`, "one");
    await writeFileAtomic(`${dir}/a.json`, "two");
    assert.equal(await Deno.readTextFile(`${dir}/a.json`), "two");
    assert.equal((await Deno.stat(`${dir}/a.json`)).mode! & 0o777, 0o600);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(names, ["a.json"]);
    // A temp file a crash left behind is removed at open; a corrupt document is named.
    await Deno.writeTextFile(`${dir}/b.json.tmp-0123456789ab`, "half");
    await Deno.writeTextFile(`${dir}/c.json`, "{not json");
    const store = new StateStore(dir);
    await store.open();
    assert.ok(!Deno.readDirSync(dir).some((e) => e.name.includes(".tmp-")));
    await assert.rejects(
      store.read("c.json"),
      (e: Error & { code?: string }) =>
        e.code === "corrupt-state" && e.message.includes(`${dir}/c.json`),
    );
    assert.equal(await store.read("missing.json"), null);
    assert.throws(() => store.path("../x"), /state file name/);
  }));

Deno.test("store: a journaled document replays its journal, drops a torn last line, folds at load", () =>
  withDir(async (dir) => {
    const store = new StateStore(dir);
    await store.open();
    const doc = new JournaledDocument<Doc, Entry>(store, "peers", apply);
    assert.equal(await doc.load(), null);
    let value: Doc = { items: ["a"] };
    await doc.replace(value);
    for (const e of [{ add: "b" }, { add: "c" }, { del: "a" }] as Entry[]) {
      value = apply(value, e);
      await doc.append(e, () => value);
    }
    doc.close();
    const journal = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("peers.journal-"))!;
    // A crash in the middle of an append: half a line at the end.
    await Deno.writeTextFile(`${dir}/${journal.name}`, '{"add":"ha', { append: true });
    // A journal of another generation is stale and ignored.
    await Deno.writeTextFile(`${dir}/peers.journal-ffffffffffffffff`, '{"add":"stale"}\n');
    const again = new JournaledDocument<Doc, Entry>(store, "peers", apply);
    assert.deepEqual(await again.load(), { items: ["b", "c"] });
    // Loading folded everything into a fresh generation: no journal is left.
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.includes("journal")),
      [],
    );
    again.close();
    // A corrupt line that is not the last one is an error, naming the file.
    const doc3 = new JournaledDocument<Doc, Entry>(store, "peers", apply);
    await doc3.load();
    await doc3.append({ add: "d" }, () => ({ items: ["b", "c", "d"] }));
    doc3.close();
    const j3 = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("peers.journal-"))!;
    await Deno.writeTextFile(`${dir}/${j3.name}`, 'garbage\n{"add":"e"}\n', { append: true });
    await assert.rejects(
      new JournaledDocument<Doc, Entry>(store, "peers", apply).load(),
      (e: Error & { code?: string }) => e.code === "corrupt-state",
    );
  }));

Deno.test("store: the journal folds into the document after its bound", () =>
  withDir(async (dir) => {
    const store = new StateStore(dir);
    await store.open();
    const doc = new JournaledDocument<Doc, Entry>(store, "j", apply, 5);
    let value: Doc = { items: [] };
    await doc.replace(value);
    for (let i = 0; i < 12; i++) {
      value = apply(value, { add: String(i) });
      await doc.append({ add: String(i) }, () => value);
    }
    doc.close();
    const lines = [...Deno.readDirSync(dir)]
      .filter((e) => e.name.startsWith("j.journal-"))
      .map((e) => Deno.readTextFileSync(`${dir}/${e.name}`).split("\n").filter(Boolean).length);
    assert.ok(lines.length <= 1 && (lines[0] ?? 0) <= 5, `journal lines ${lines}`);
    const reread = new JournaledDocument<Doc, Entry>(store, "j", apply, 5);
    assert.deepEqual((await reread.load())!.items, [...Array(12).keys()].map(String));
    reread.close();
  }));
