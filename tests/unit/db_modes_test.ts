/** The state directory is 0700; secret.key, the database and its -wal/-shm files are 0600. */
import assert from "node:assert/strict";
import { DATABASE_MODE, openDatabase } from "../../controller/db/sqlite.ts";
import { openState } from "../../controller/state.ts";

const mode = (p: string) => Deno.statSync(p).mode! & 0o777;

Deno.test("db modes: a new state is 0700 with 0600 files, -wal and -shm included, whatever the umask", async () => {
  const parent = await Deno.makeTempDir();
  const old = Deno.umask(0o000); // the widest umask: nothing may rely on it
  try {
    const dir = `${parent}/state`;
    const state = await openState(dir, { create: true });
    try {
      assert.equal(mode(dir), 0o700);
      for (const f of ["pharos.db", "pharos.db-wal", "pharos.db-shm", "secret.key"]) {
        assert.equal(mode(`${dir}/${f}`), 0o600, f);
      }
    } finally {
      state.close();
    }
  } finally {
    Deno.umask(old);
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("db modes: files and a directory left wider (an old version, a restore) are narrowed at open", async () => {
  const parent = await Deno.makeTempDir();
  try {
    const dir = `${parent}/state`;
    (await openState(dir, { create: true })).close();
    Deno.chmodSync(dir, 0o755);
    Deno.chmodSync(`${dir}/pharos.db`, 0o644);
    Deno.chmodSync(`${dir}/secret.key`, 0o644);
    const state = await openState(dir);
    try {
      assert.equal(mode(dir), 0o700);
      for (const f of ["pharos.db", "pharos.db-wal", "pharos.db-shm", "secret.key"]) {
        assert.equal(mode(`${dir}/${f}`), 0o600, f);
      }
    } finally {
      state.close();
    }
  } finally {
    await Deno.remove(parent, { recursive: true });
  }
});

Deno.test("db modes: openDatabase alone makes a new database and its companions 0600", async () => {
  const dir = await Deno.makeTempDir();
  const old = Deno.umask(0o000);
  try {
    const db = openDatabase(`${dir}/x.db`);
    try {
      for (const f of ["x.db", "x.db-wal", "x.db-shm"]) {
        assert.equal(mode(`${dir}/${f}`), DATABASE_MODE, f);
      }
    } finally {
      db.close();
    }
    // In memory: nothing on disk to change.
    openDatabase(":memory:").close();
  } finally {
    Deno.umask(old);
    await Deno.remove(dir, { recursive: true });
  }
});
