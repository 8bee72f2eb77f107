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

/**
 * Whether a userspace WireGuard daemon serves `name`: its control socket
 * answers. A socket file nobody listens on is what a daemon killed with
 * SIGKILL leaves behind (wireguard-go removes it only on a clean exit, and
 * takes such a file over itself at start): it does not hold the name, and is
 * removed so that such files never pile up until no name is left.
 */
export async function socketInUse(
  name: string,
  dirs = ["/var/run/wireguard", "/var/run/amneziawg"],
): Promise<boolean> {
  for (const dir of dirs) {
    const path = `${dir}/${name}.sock`;
    try {
      await Deno.stat(path);
    } catch {
      continue; // no file
    }
    try {
      (await Deno.connect({ transport: "unix", path })).close();
      return true;
    } catch (e) {
      if (!(e instanceof Deno.errors.ConnectionRefused)) return true; // cannot tell: keep off it
      await Deno.remove(path).catch(() => {});
    }
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
      if (out.includes(name)) continue;
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
      // Looked at only while holding the name: no run of ours starts a daemon for it meanwhile.
      if (await socketInUse(name)) {
        await Deno.remove(lock).catch(() => {});
        continue;
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
