/**
 * Interface names for agent tests that cannot collide with a concurrent
 * test run. Userspace WireGuard keeps its control sockets in one directory
 * shared by every network namespace (/var/run/wireguard/<if>.sock), and the
 * agent's names are fixed by the contract to awg0 … awg999, so each name a
 * test uses is reserved first: an exclusive lock file under /tmp (created
 * with createNew, so two runs never get the same name), released at the
 * end; a lock left by a process that is gone is taken over.
 */
const LOCK_DIR = "/tmp/pharos-test-ifnames";

function alive(pid: number): boolean {
  try {
    return Deno.statSync(`/proc/${pid}`).isDirectory;
  } catch {
    return false;
  }
}

async function socketInUse(name: string): Promise<boolean> {
  for (const dir of ["/var/run/wireguard", "/var/run/amneziawg"]) {
    try {
      await Deno.stat(`${dir}/${name}.sock`);
      return true;
    } catch { /* free */ }
  }
  return false;
}

export class InterfaceNames {
  #held: string[] = [];

  /** Reserves `count` distinct awgN names (N in 1 … 999). */
  async reserve(count: number): Promise<string[]> {
    await Deno.mkdir(LOCK_DIR, { recursive: true });
    const out: string[] = [];
    for (let attempt = 0; attempt < 5000 && out.length < count; attempt++) {
      const n = 1 + (crypto.getRandomValues(new Uint16Array(1))[0] % 999);
      const name = `awg${n}`;
      if (out.includes(name) || await socketInUse(name)) continue;
      const lock = `${LOCK_DIR}/${name}`;
      try {
        await Deno.writeTextFile(lock, String(Deno.pid), { createNew: true });
      } catch {
        const owner = Number(await Deno.readTextFile(lock).catch(() => "0"));
        if (owner > 0 && alive(owner)) continue;
        await Deno.remove(lock).catch(() => {});
        try {
          await Deno.writeTextFile(lock, String(Deno.pid), { createNew: true });
        } catch {
          continue; // another run took it first
        }
      }
      out.push(name);
      this.#held.push(name);
    }
    if (out.length < count) throw new Error(`could not reserve ${count} interface names`);
    return out;
  }

  async releaseAll(): Promise<void> {
    for (const name of this.#held.splice(0)) {
      await Deno.remove(`${LOCK_DIR}/${name}`).catch(() => {});
    }
  }
}
