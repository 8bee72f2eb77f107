/**
 * Scaffolding of the SSH onboarding suites. The "remote host" is this
 * machine, reached over loopback through a throwaway sshd (sshd.ts); a temp
 * directory stands for /var/lib/pharos-agent (or /etc/pharos-relay). The
 * test install script (onboarding_install.sh) stands for deploy/*.sh, the
 * real `agent gen-csr` / `relay gen-csr` make the key and CSR (so the key is
 * made "on the node", by the node-side program), and the start step runs
 * the real agent (in a network namespace of the test, reached through a
 * unix-socket forwarder) or the real relay (on loopback) in the background.
 *
 * Failures are injected on the host side only: while a flag file exists,
 * onboarding_fault.sh makes the wrapped command fail (or print an RSA CSR,
 * or not start anything).
 */
import { Service } from "../../controller/service/service.ts";
import { controllerSshKey } from "../../controller/ssh/controller_key.ts";
import type { ControllerSshKey } from "../../controller/ssh/controller_key.ts";
import { type ControllerState, openState } from "../../controller/state.ts";
import type { RemoteSetup } from "../../controller/onboarding/setup.ts";
import { Sshd, TEST_USER } from "./sshd.ts";

export const ROOT = new URL("../../", import.meta.url).pathname;
export const SUPPORT = `${ROOT}tests/support`;
export const DENO = Deno.execPath();
export const ACTOR = "cli:test";

/** True while the process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

export class OnboardingLab {
  private constructor(
    readonly tmp: string,
    readonly state: ControllerState,
    readonly key: ControllerSshKey,
    readonly sshd: Sshd,
  ) {}

  static async create(): Promise<OnboardingLab> {
    const tmp = await Deno.makeTempDir({ prefix: "pharos-onb-" });
    await Deno.chmod(tmp, 0o755);
    const state = await openState(`${tmp}/state`, { create: true });
    const key = await controllerSshKey(new Service(state.db), state.keystore, ACTOR);
    const sshd = await Sshd.start({
      authorizedKeys: { root: [key.publicLine], [TEST_USER]: [key.publicLine] },
    });
    return new OnboardingLab(tmp, state, key, sshd);
  }

  get service(): Service {
    return new Service(this.state.db);
  }

  /** A fresh directory standing for a host's /var/lib/pharos-agent (not created yet). */
  hostDir(name: string): string {
    return `${this.tmp}/${name}`;
  }

  /** A flag file; while it exists the matching fault is injected. */
  flag(name: string): string {
    return `${this.tmp}/flag-${name}`;
  }

  async raise(name: string): Promise<void> {
    await Deno.writeTextFile(this.flag(name), "1");
  }

  async clear(name: string): Promise<void> {
    await Deno.remove(this.flag(name)).catch(() => {});
  }

  /** Install, gen-csr and start as the tests run them (each with its fault flag). */
  setup(dir: string, start: string[], genCsr?: string[]): Partial<RemoteSetup> {
    return {
      installScript: `${SUPPORT}/onboarding_install.sh`,
      installFiles: [],
      installArgs: ["{dir}", this.flag("install")],
      dir,
      genCsr: [
        "sh",
        `${SUPPORT}/onboarding_fault.sh`,
        "fail",
        this.flag("gen-csr"),
        "sh",
        `${SUPPORT}/onboarding_fault.sh`,
        "rsa-csr",
        this.flag("rsa-csr"),
        ...(genCsr ?? [DENO, "run", "-A", `${ROOT}agent/main.ts`, "gen-csr", "--dir", "{dir}"]),
      ],
      start: [
        ["sh", `${SUPPORT}/onboarding_fault.sh`, "fail", this.flag("start"), "true"],
        ["sh", `${SUPPORT}/onboarding_fault.sh`, "noop", this.flag("no-start"), ...start],
      ],
      stagingDir: `${this.tmp}/staging`,
    };
  }

  /** The argv starting `command` in the background (pid in DIR/service.pid). */
  background(dir: string, command: string[]): string[] {
    return [
      "sh",
      `${SUPPORT}/onboarding_bg.sh`,
      `${dir}/service.pid`,
      `${dir}/service.log`,
      ...command,
    ];
  }

  /** Stops the background service of `dir` if one runs (TERM, then KILL). */
  async stopService(dir: string): Promise<void> {
    const pid = Number(await Deno.readTextFile(`${dir}/service.pid`).catch(() => "0"));
    if (!(pid > 1)) return;
    for (const sig of ["SIGTERM", "SIGKILL"] as const) {
      if (!alive(pid)) return;
      try {
        Deno.kill(pid, sig);
      } catch {
        return;
      }
      for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    }
  }

  async close(): Promise<void> {
    await this.sshd.stop();
    this.state.close();
    await Deno.remove(this.tmp, { recursive: true }).catch(() => {});
  }
}
