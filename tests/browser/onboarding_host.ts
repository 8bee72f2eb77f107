/**
 * A node host for the dashboard's onboarding test, reached the way the
 * controller tests reach theirs: the real OpenSSH sshd on loopback
 * (tests/support/sshd.ts) with the controller's own SSH key authorised for
 * root, the test install script, the real `agent gen-csr` over SSH, and a
 * start step that launches the real `agent run` in a network namespace of
 * the test. Two points are held until the test lets them go, so a page can
 * be watched while the onboarding is under way: `gen-csr` waits for a gate
 * file (`releaseGenCsr`), and the controller reaches the agent's NodeControl
 * only through a unix-socket forwarder the test opens (`openNodeControl`),
 * until which the "ready" step keeps retrying.
 */
import type { HostOverrides } from "../../controller/api/onboard.ts";
import { Service } from "../../controller/service/service.ts";
import { controllerSshKey } from "../../controller/ssh/controller_key.ts";
import type { ControllerState } from "../../controller/state.ts";
import { agentCapability, Lab } from "../support/agent_harness.ts";
import { ACTOR, DENO, ROOT, SUPPORT } from "../support/onboarding_fixture.ts";
import { Sshd, sshdCapability } from "../support/sshd.ts";

/** Root, sshd, and what the real agent needs (wireguard-go, wg, iproute2, iptables). */
export function onboardingHostCapability() {
  const suite = "dashboard onboarding against a real sshd and agent";
  const ssh = sshdCapability(suite);
  return ssh.ignore ? ssh : agentCapability(suite);
}

export class OnboardingHost {
  #forwarder = false;

  private constructor(
    readonly lab: Lab,
    readonly sshd: Sshd,
    readonly ns: string,
    readonly iface: string,
    readonly dir: string,
    readonly socket: string,
  ) {}

  /** The sshd accepts the controller key of `state` (made now if it has none). */
  static async start(state: Pick<ControllerState, "db" | "keystore">): Promise<OnboardingHost> {
    const key = await controllerSshKey(new Service(state.db), state.keystore, ACTOR);
    const lab = await Lab.create();
    try {
      await Deno.chmod(lab.tmp, 0o755);
      const sshd = await Sshd.start({ authorizedKeys: { root: [key.publicLine] } });
      const ns = await lab.ns("d");
      const [iface] = await lab.names.reserve(1);
      return new OnboardingHost(
        lab,
        sshd,
        ns,
        iface,
        `${lab.tmp}/pharos-agent`,
        `${lab.tmp}/nodecontrol.sock`,
      );
    } catch (e) {
      await lab.cleanup();
      throw e;
    }
  }

  get port(): number {
    return this.sshd.port;
  }

  /** For `nodeOnboarding(state, overrides)`: this host's commands and its NodeControl path. */
  readonly overrides: HostOverrides = () => ({
    setup: {
      installScript: `${SUPPORT}/onboarding_install.sh`,
      installFiles: [],
      // The second argument names a fault flag file that this test never creates.
      installArgs: ["{dir}", `${this.lab.tmp}/no-install-fault`],
      dir: this.dir,
      genCsr: [
        "sh",
        `${SUPPORT}/onboarding_hold.sh`,
        this.#gate,
        ...[DENO, "run", "-A", `${ROOT}agent/main.ts`, "gen-csr", "--dir", "{dir}"],
      ],
      start: [[
        "sh",
        `${SUPPORT}/onboarding_bg.sh`,
        `${this.dir}/service.pid`,
        `${this.dir}/service.log`,
        "ip",
        "netns",
        "exec",
        this.ns,
        DENO,
        "run",
        "-A",
        `${ROOT}agent/main.ts`,
        "run",
        "--state",
        "{dir}",
        "--listen",
        "127.0.0.1:8444",
        "--interface",
        this.iface,
        "--awg-port",
        "51820",
        "--poll-interval",
        "1s",
      ]],
      stagingDir: `${this.lab.tmp}/staging`,
    },
    nodeControlTarget: `unix:${this.socket}`,
    ready: { attempts: 240, intervalMs: 250, callTimeoutMs: 5000 },
  });

  get #gate(): string {
    return `${this.lab.tmp}/gen-csr.go`;
  }

  /** Lets the held `gen-csr` step run (it waits for this, at most 120 s). */
  async releaseGenCsr(): Promise<void> {
    await Deno.writeTextFile(this.#gate, "");
  }

  /** Opens the path from the controller to the agent's NodeControl (a forwarder in the namespace). */
  async openNodeControl(): Promise<void> {
    if (this.#forwarder) return;
    this.#forwarder = true;
    const fwd = this.lab.spawn(this.ns, [
      DENO,
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      `${SUPPORT}/ns_forward.ts`,
      this.socket,
      "127.0.0.1",
      "8444",
    ], { label: "NodeControl forwarder" });
    await fwd.line(/^ready$/, 60_000);
  }

  /** The agent's own log (for a failure message). */
  async agentLog(): Promise<string> {
    return await Deno.readTextFile(`${this.dir}/service.log`).catch(() => "(no agent log)");
  }

  /** Stops the agent (every process in the namespace), the sshd, and removes all files. */
  async close(): Promise<void> {
    await this.sshd.stop();
    await this.lab.cleanup();
  }
}
