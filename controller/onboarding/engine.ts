/**
 * The onboarding steps shared by nodes and relays, run in order over one
 * SSH connection, each announced (`started`) and concluded (`done` or
 * `failed`) as an OnboardingProgress event:
 *
 *   connect    SSH session; host key pinned on first use, refused if changed
 *   privilege  root, or sudo (NOPASSWD, or the password from stdin)
 *   install    install script (+ files) staged on the host and run as root
 *   gen-csr    the host makes (or reuses) its key and prints a CSR
 *   sign       CSR verified; certificate reused or issued by the Fleet CA
 *   upload     certificate chain and CA files written into the directory
 *   start      service enabled and (re)started
 *   ready      the service answers with the new certificate
 *
 * Every step is safe to repeat, so a failed run is resumed by running the
 * same command again. A failure is recorded on the row (state `failed`,
 * the step, the error) and thrown as an OnboardingError naming the step.
 *
 * A run given an AbortSignal (the controller stopping) ends at once when it
 * aborts: the SSH connection is dropped, the step in progress fails as
 * stopped (`operation-stopped`) and no further step begins. What a dropped
 * step leaves on the host is what a failed one leaves: files are written
 * atomically and every step repeats safely.
 */
import type { Pki, TrustStore, X509Certificate } from "../../core/pki/mod.ts";
import { certPem } from "../../core/pki/mod.ts";
import type { Keystore } from "../keystore.ts";
import type { Actor, Service } from "../service/service.ts";
import { SshConnection } from "../ssh/client.ts";
import { controllerSshKey } from "../ssh/controller_key.ts";
import { checkHostKey, type HostKey, type HostKeyDecision, pinnedType } from "../ssh/host_key.ts";
import { RemoteHost } from "../ssh/remote.ts";
import { oneLine } from "../ssh/text.ts";
import { formatSshTarget, type SshTarget } from "../ssh/target.ts";
import { extractCsr, issueOrReuse } from "./certificate.ts";
import { describeError, OnboardingError } from "./errors.ts";
import {
  type OnboardingKind,
  type OnboardingProgress,
  type ProgressListener,
  type StepName,
  STEPS,
} from "./events.ts";
import type { ResolvedSetup } from "./setup.ts";
import { statement } from "../db/sqlite.ts";

export type SshCredentials = { kind: "key" } | { kind: "password"; password: string };

/** What the engine needs from the controller's state. */
export interface OnboardingDeps {
  service: Service;
  keystore: Keystore;
  pki: { cas: Pki; trust: TrustStore };
  actor: Actor;
}

/** The node- or relay-specific part. */
export interface Subject {
  kind: OnboardingKind;
  id: string;
  name: string;
  /** The pinned host key line, or null. */
  pinnedHostKey(): string | null;
  pinHostKey(line: string): void;
  /** The certificate recorded at an earlier run (leaf PEM). */
  previousCertPem(): string | null;
  profile: { kind: "node"; host: string } | { kind: "relay"; hosts: string[] };
  recordCertificate(leaf: X509Certificate, serial: string): void;
  /** File name → content, written into `dir`. */
  files(leaf: X509Certificate): Record<string, string>;
  waitReady(
    leaf: X509Certificate,
    note: (message: string) => void,
    signal?: AbortSignal,
  ): Promise<StepResult>;
  /** The service picks up new certificate files without a restart (the agent does). */
  reloadsCertificates: boolean;
  failed(step: StepName, message: string): void;
  done(): void;
}

export interface StepResult {
  message: string;
  details?: Record<string, string>;
}

export interface EngineOptions {
  target: SshTarget;
  credentials: SshCredentials;
  sudo: boolean;
  /** `--accept-new-host-key`: the fingerprint to accept when none or another is pinned. */
  acceptHostKey?: string;
  setup: ResolvedSetup;
  /** The command an operator re-runs (for messages), e.g. `cox nodes add root@host`. */
  rerun: string;
  onProgress?: ProgressListener;
  /** SSH connect limit (default 20 s). */
  connectTimeoutMs?: number;
  /** Aborted when the controller stops: the run ends at once (see the module comment). */
  signal?: AbortSignal;
  /**
   * Certificate renewal of an onboarded host: no install, a new certificate
   * for the host's key whatever the old one, and no restart of a service that
   * reloads its certificate files by itself (`reloadsCertificates`).
   */
  renew?: boolean;
}

export interface EngineResult {
  hostKey: HostKey;
  hostKeyDecision: HostKeyDecision;
  serial: string;
  certificateReused: boolean;
}

export async function runOnboarding(
  deps: OnboardingDeps,
  subject: Subject,
  opts: EngineOptions,
): Promise<EngineResult> {
  const setup = opts.setup;
  const targetText = formatSshTarget(opts.target);
  const run = crypto.randomUUID();
  const emit = (
    step: StepName,
    status: OnboardingProgress["status"],
    r: StepResult,
    code?: string,
  ) => {
    const e: OnboardingProgress = {
      run,
      kind: subject.kind,
      id: subject.id,
      name: subject.name,
      target: targetText,
      step,
      index: STEPS.indexOf(step) + 1,
      total: STEPS.length,
      status,
      message: oneLine(r.message, 2000),
      time: new Date().toISOString(),
      ...(code ? { code } : {}),
      ...(r.details ? { details: r.details } : {}),
    };
    try {
      opts.onProgress?.(e);
    } catch { /* a listener never stops onboarding */ }
  };

  let conn: SshConnection | null = null;
  let remote: RemoteHost | null = null;
  let hostKey: HostKey | null = null;
  let decision: HostKeyDecision = "matches";
  let csrPem = "";
  let leaf: X509Certificate | null = null;
  let serial = "";
  let reused = false;
  const where = `${opts.target.host}:${opts.target.port}`;

  /** `local`: works on the controller's side only; a stop waits for it (it is short). */
  const steps: Record<
    StepName,
    { start: string; run: () => Promise<StepResult>; local?: boolean }
  > = {
    connect: {
      start: `connecting to ${targetText}`,
      run: async () => {
        const pinned = subject.pinnedHostKey();
        const auth = opts.credentials.kind === "password"
          ? { password: opts.credentials.password }
          : {
            privateKey:
              (await controllerSshKey(deps.service, deps.keystore, deps.actor)).privatePem,
          };
        conn = await SshConnection.connect({
          target: opts.target,
          auth,
          preferHostKeyType: pinnedType(pinned),
          timeoutMs: opts.connectTimeoutMs,
          signal: opts.signal,
          verifyHostKey: (presented) => {
            decision = checkHostKey({
              pinned,
              presented,
              accept: opts.acceptHostKey,
              where,
              rerun: opts.rerun,
            });
            hostKey = presented;
          },
        });
        // Connected just as the stop came: the stop has passed this connection by.
        if (opts.signal?.aborted) conn.destroy();
        opts.signal?.throwIfAborted();
        const hk = hostKey as HostKey | null;
        if (hk === null) {
          throw new OnboardingError("no-host-key", "no host key was checked", "connect");
        }
        if (decision !== "matches") subject.pinHostKey(hk.line);
        const how = opts.credentials.kind === "password" ? "password" : "the controller's key";
        const what = decision === "pinned"
          ? `pinned on first use — compare it with "ssh-keygen -lf ${
            hostKeyFile(hk.type)
          }" on the host`
          : decision === "re-pinned"
          ? "re-pinned as --accept-new-host-key asked"
          : "matches the pinned key";
        return {
          message: `logged in with ${how}; host key ${hk.fingerprint} (${hk.type}) ${what}`,
          details: { fingerprint: hk.fingerprint, hostKeyType: hk.type, hostKey: decision },
        };
      },
    },
    privilege: {
      start: opts.sudo ? "checking sudo" : "checking that the user is root",
      run: async () => {
        remote = new RemoteHost(conn!, {
          sudo: opts.sudo,
          sudoPassword: opts.credentials.kind === "password"
            ? opts.credentials.password
            : undefined,
        });
        const p = await remote.checkPrivilege();
        const text = p === "root"
          ? "running as root"
          : p === "sudo-nopasswd"
          ? "running as root through sudo (no password needed)"
          : "running as root through sudo (with the password)";
        return { message: text, details: { privilege: p } };
      },
    },
    install: {
      start: `uploading and running ${setup.staged[0].remote.split("/").pop()}`,
      run: async () => {
        if (opts.renew) return { message: "skipped: a renewal keeps what is installed" };
        const r = remote!;
        await r.ensureDir(setup.stagingDir, 0o700);
        for (const f of setup.staged) {
          await r.writeFile(f.remote, await Deno.readFile(f.local), 0o600);
        }
        const out = await r.mustRun(
          ["sh", setup.staged[0].remote, ...setup.installArgs],
          `the install script ${setup.staged[0].remote}`,
          { timeoutMs: setup.installTimeoutMs ?? 900_000 },
        );
        await r.run(["rm", "-f", "--", ...setup.staged.map((f) => f.remote)]);
        const last = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
        return { message: `install script finished${last ? `: ${oneLine(last, 200)}` : ""}` };
      },
    },
    "gen-csr": {
      start: `making the key and CSR on the host (${setup.dir})`,
      run: async () => {
        const out = await remote!.mustRun(setup.genCsr, "making the key and CSR", {
          timeoutMs: 300_000,
        });
        csrPem = extractCsr(new TextDecoder().decode(out.stdout));
        const note = oneLine(new TextDecoder().decode(out.stderr).trim().split("\n")[0] ?? "", 300);
        return {
          message: `CSR received; the private key stays on the host${note ? ` (${note})` : ""}`,
        };
      },
    },
    sign: {
      start: "verifying the CSR and signing it with the Fleet CA",
      local: true,
      run: async () => {
        const revoked = statement(
          deps.service.db,
          "SELECT 1 FROM revoked_certificates WHERE serial = ?",
        );
        const out = await issueOrReuse({
          cas: deps.pki.cas,
          trust: deps.pki.trust,
          csrPem,
          profile: subject.profile,
          previousPem: opts.renew ? null : subject.previousCertPem(),
          isRevoked: (s) => revoked.get(s) !== undefined,
        });
        leaf = out.leaf;
        serial = out.serial;
        reused = out.reused;
        if (!reused) subject.recordCertificate(out.leaf, out.serial);
        return {
          message: reused
            ? `the certificate issued before (serial ${serial}) matches the host's key: reused`
            : `issued a ${subject.kind} certificate, serial ${serial}, valid until ${
              out.leaf.notAfter.toISOString().slice(0, 10)
            }`,
          details: { serial, reused: String(reused) },
        };
      },
    },
    upload: {
      start: `installing the certificates in ${setup.dir}`,
      run: async () => {
        const files = subject.files(leaf!);
        for (const [name, text] of Object.entries(files)) {
          await remote!.writeFile(`${setup.dir}/${name}`, text, 0o644);
        }
        return { message: `installed ${Object.keys(files).join(", ")} in ${setup.dir}` };
      },
    },
    start: {
      start: "starting the service",
      run: async () => {
        if (opts.renew && subject.reloadsCertificates) {
          return { message: "skipped: the service reloads its certificate files by itself" };
        }
        for (const argv of setup.start) {
          await remote!.mustRun(argv, argv.join(" "), { timeoutMs: 120_000 });
        }
        return { message: `ran ${setup.start.map((a) => a.join(" ")).join("; ")}` };
      },
    },
    ready: {
      start: "waiting for the service to answer",
      run: () =>
        subject.waitReady(leaf!, (m) => emit("ready", "progress", { message: m }), opts.signal),
    },
  };

  try {
    for (const step of STEPS) {
      let result: StepResult;
      try {
        opts.signal?.throwIfAborted();
        emit(step, "started", { message: steps[step].start });
        result = steps[step].local ? await steps[step].run() : await untilAborted(
          steps[step].run,
          opts.signal,
          () => (conn as SshConnection | null)?.destroy(),
        );
      } catch (e) {
        const stopped = opts.signal?.aborted === true;
        const described = stopped
          ? {
            code: "operation-stopped",
            message: `stopped: the controller is shutting down; run "${opts.rerun}" again ` +
              "once it runs: onboarding resumes (each step is safe to repeat)",
          }
          : describeError(e);
        const code = described.code;
        const message = oneLine(described.message, 2000);
        const stepText = `step "${step}" (${
          STEPS.indexOf(step) + 1
        }/${STEPS.length}) on ${targetText}`;
        const text = stopped ? `${stepText} ${message}` : `${stepText} failed: ${message}` +
          (code === "host-key-changed" || code === "host-key-mismatch"
            ? ""
            : `${/[.?!]$/.test(message) ? "" : "."} Fix that, then run "${opts.rerun}" again: ` +
              "onboarding resumes (each step is safe to repeat)");
        emit(step, "failed", { message }, code);
        try {
          subject.failed(step, `${code}: ${message}`);
        } catch { /* the row may be gone; the error below says what failed */ }
        throw new OnboardingError(code, text, step, { cause: e });
      }
      emit(step, "done", result);
    }
    subject.done();
    emit("ready", "finished", {
      message: `${subject.kind} ${subject.name} ${
        opts.renew ? "has a renewed certificate" : "is onboarded"
      } (certificate serial ${serial})`,
      details: { serial },
    });
    return {
      hostKey: hostKey!,
      hostKeyDecision: decision,
      serial,
      certificateReused: reused,
    };
  } finally {
    (conn as SshConnection | null)?.close();
  }
}

/**
 * `work()`, or — once `signal` aborts — `onAbort()` and a rejection with the
 * abort reason at once, without waiting for `work` (a remote command may
 * never answer). A late failure of the abandoned work is dropped.
 */
async function untilAborted<T>(
  work: () => Promise<T>,
  signal: AbortSignal | undefined,
  onAbort: () => void,
): Promise<T> {
  if (!signal) return await work();
  let stop = () => {};
  const aborted = new Promise<never>((_, reject) => {
    const listener = () => {
      onAbort();
      reject(signal.reason);
    };
    signal.addEventListener("abort", listener, { once: true });
    stop = () => signal.removeEventListener("abort", listener);
  });
  const running = work();
  running.catch(() => {/* reported through the race below, or abandoned */});
  try {
    return await Promise.race([running, aborted]);
  } finally {
    stop();
  }
}

/** Where OpenSSH keeps the host key of a type. */
function hostKeyFile(type: string): string {
  const name = type === "ssh-ed25519"
    ? "ed25519"
    : type.startsWith("ecdsa-")
    ? "ecdsa"
    : type === "ssh-rsa"
    ? "rsa"
    : "*";
  return `/etc/ssh/ssh_host_${name}_key.pub`;
}

/** PEM of the CA files every onboarded host gets (README: ca.crt, fleet-ca.crt, device-ca.crt). */
export function caFiles(cas: Pki): { root: string; fleet: string; device: string } {
  return {
    root: certPem(cas.root.cert),
    fleet: certPem(cas.fleet.cert),
    device: certPem(cas.device.cert),
  };
}
