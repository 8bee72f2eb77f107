/**
 * What clients enroll and sync against in tests.
 *
 * - `fakeAccountSync`: an in-memory AccountSync behind a relay for
 *   core/client unit tests: a real fleet PKI (relay leaf, Device-CA leaves
 *   issued from the client's CSR), a real Ed25519 signing key and real
 *   sealed profiles — only the socket is missing. Knobs let a test play the
 *   attacker: another chain, another signing key, an older revision, a
 *   tampered bundle.
 * - `relayController`: the real thing for integration tests: a controller
 *   on a fresh state with its embedded relay on loopback, and join links
 *   that point at that relay.
 */
import * as pki from "../../core/pki/mod.ts";
import { buildJoinLink, newEnrollmentToken, rootFingerprint } from "../../core/profile/mod.ts";
import {
  encodeSealedBundle,
  generateSigningKeyPair,
  type KeyPair,
  sealProfile,
} from "../../core/seal/mod.ts";
import { utf8 } from "../../core/encoding.ts";
import type {
  AccountChannel,
  AccountTransport,
  ClaimRequest,
  ClaimResponse,
  ProfileResponse,
  RelayTls,
} from "../../core/client/mod.ts";
import { ClientError, keyChallengeBinding } from "../../core/client/mod.ts";
import { KeyChallenges } from "../../controller/accounts/key_challenges.ts";
import { resolveConfig } from "../../controller/config.ts";
import { type RunningController, startController } from "../../controller/serve.ts";
import type { Actor } from "../../controller/service/service.ts";
import type { User } from "../../controller/service/users.ts";
import { WAIT_MS, within } from "./wait.ts";
import { makeFleet } from "./pki_fixture.ts";
import { SAMPLE_PROFILE_TEXT } from "../unit/seal_support.ts";

export interface FakeAccountSync extends AccountTransport {
  link: string;
  fleet: Awaited<ReturnType<typeof makeFleet>>;
  signing: KeyPair;
  /** The chain the relay presents (leaf first). */
  chain: Uint8Array[];
  /** Every claim request received. */
  claims: ClaimRequest[];
  /** Every Authenticate received (email, password). */
  logins: { email: string; password: string }[];
  /** Changes to apply to the claim answer. */
  claimPatch: Partial<ClaimResponse>;
  /** Profile revision and expiry the next GetProfile seals. */
  revision: number;
  expiresAt: string;
  /** Overrides of the next GetProfile answer. */
  profilePatch: (res: ProfileResponse) => ProfileResponse | Promise<ProfileResponse>;
  /** Leaves checked by the client's TLS rule, in order. */
  checkedLeaves: Uint8Array[];
  /** The account key the controller holds (EnrollKeys), as the real one keeps it. */
  account?: { publicKey: Uint8Array; wrapped: Uint8Array };
  /** Rewrites the key challenge a refused replacement sends ("" sends none). */
  keyChallenge: (issued: string) => string | Promise<string>;
}

const der = (c: pki.X509Certificate) => pki.certDer(c);

/** Seals the sample profile with `revision`/`expiresAt` to `recipient`, signed by `signing`. */
export async function sealSample(
  recipient: Uint8Array,
  signing: Uint8Array,
  revision: number,
  expiresAt: string,
  user = "usr_demo",
): Promise<Uint8Array> {
  const doc = JSON.parse(SAMPLE_PROFILE_TEXT);
  Object.assign(doc, { revision, expires_at: expiresAt, user });
  const bundle = await sealProfile(utf8.encode(JSON.stringify(doc)), recipient, signing);
  return utf8.encode(encodeSealedBundle(bundle));
}

export async function fakeAccountSync(relayHost = "relay.example"): Promise<FakeAccountSync> {
  const fleet = await makeFleet();
  const relay = await fleet.issue({ kind: "relay", hosts: [relayHost] });
  const signing = generateSigningKeyPair();
  const link = buildJoinLink({
    ca: rootFingerprint(der(fleet.pki.root.cert)),
    relay: `${relayHost}:8443`,
    token: newEnrollmentToken(),
  });
  let encryptionKey: Uint8Array | undefined;
  // The controller's own challenge logic (nonce sealed to the old key, good once).
  const challenges = new KeyChallenges(signing);
  const f: FakeAccountSync = {
    link,
    fleet,
    signing,
    chain: [der(relay.cert), der(fleet.pki.fleet.cert), der(fleet.pki.root.cert)],
    claims: [],
    logins: [],
    claimPatch: {},
    revision: 3,
    expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    profilePatch: (r) => r,
    checkedLeaves: [],
    keyChallenge: (c) => c,
    presentedChain: () => Promise.resolve(f.chain.map((c) => new Uint8Array(c))),
    open(_relay, tls: RelayTls): AccountChannel {
      // The handshake: the client's leaf rule runs before any call.
      f.checkedLeaves.push(f.chain[0]);
      let failure: unknown;
      try {
        tls.checkLeaf(f.chain[0]);
      } catch (e) {
        failure = e;
      }
      const guard = () => failure ? Promise.reject(failure) : Promise.resolve();
      return {
        async claimEnrollment(req) {
          await guard();
          f.claims.push(req);
          encryptionKey = req.encryptionPublicKey;
          const cert = await pki.issueLeaf(fleet.pki, req.csrPem, {
            kind: "device",
            name: req.deviceName,
          });
          return {
            deviceCertPem: pki.certPem(cert),
            fleetCaPem: pki.certPem(fleet.pki.fleet.cert),
            relayAddr: `${relayHost}:8443`,
            relayServerName: relayHost,
            caFingerprint: rootFingerprint(der(fleet.pki.root.cert)),
            signingPublicKey: signing.publicKey,
            ...f.claimPatch,
          };
        },
        async authenticate(email, password) {
          await guard();
          f.logins.push({ email, password });
          return {
            sessionToken: "s".repeat(43),
            userId: "usr_demo",
            keysEnrolled: f.account !== undefined,
          };
        },
        async enrollKeys(publicKey, wrapped, _session, proof) {
          await guard();
          const held = f.account;
          const same = held && sameBytes(held.publicKey, publicKey) &&
            sameBytes(held.wrapped, wrapped);
          const binding = keyChallengeBinding(publicKey, wrapped);
          if (held && !same && !challenges.take("usr_demo", proof, binding, new Date())) {
            const issued = await challenges.issue("usr_demo", held.publicKey, binding, new Date());
            const challenge = await f.keyChallenge(issued);
            throw new ClientError("rejected", "EnrollKeys refused: an account key exists", {
              grpcCode: 9,
              trailers: challenge ? { "pharos-key-challenge": challenge } : {},
            });
          }
          f.account = { publicKey: new Uint8Array(publicKey), wrapped: new Uint8Array(wrapped) };
        },
        async getProfile() {
          await guard();
          if (!encryptionKey) throw new ClientError("rejected", "not found", { grpcCode: 5 });
          return await f.profilePatch({
            ciphertext: await sealSample(
              encryptionKey,
              signing.privateKey,
              f.revision,
              f.expiresAt,
            ),
            revision: f.revision,
            signingPublicKey: signing.publicKey,
            wrappedPrivateKey: new Uint8Array(0),
          });
        },
        close() {},
      };
    },
  };
  return f;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A running controller whose embedded relay listens on loopback. */
export interface RelayController {
  ctl: RunningController;
  /** The temp directory; the state is `${dir}/state`. */
  dir: string;
  /** The embedded relay's bound port. */
  port: number;
  /** The fleet's root CA (PEM), which join links pin. */
  rootPem: string;
  /** Adds a user and makes a join link for it (bound unless `unbound`). */
  invite(email: string, opts?: LinkOptions): { user: User; link: string };
  /** Another join link for an existing user. */
  link(email: string, opts?: LinkOptions): string;
  /** Shuts the controller down (bounded; once), keeping `dir`. */
  stop(): Promise<void>;
  /** Stops it and removes `dir`. */
  close(): Promise<void>;
}

export interface LinkOptions {
  unbound?: boolean;
  actor?: Actor;
}

/**
 * Starts a controller on a new temp state with its embedded relay on
 * 127.0.0.1 (any port). Its join links name the relay by `relayHosts`'
 * first entry (the name in the relay's certificate; default 127.0.0.1, so
 * a client reaches it as the link says) and its bound port.
 */
export async function relayController(opts: {
  prefix?: string;
  relayHosts?: string;
  logSink?: (line: string) => void;
  onPeersChanged?: (nodeIds: string[]) => void;
} = {}): Promise<RelayController> {
  const dir = await Deno.makeTempDir({ prefix: opts.prefix ?? "pharos-relay-ctl-" });
  const cfg = resolveConfig({
    state: `${dir}/state`,
    "ui-listen": "127.0.0.1:0",
    "relay-listen": "127.0.0.1:0",
    "relay-hosts": opts.relayHosts ?? "127.0.0.1",
    "log-level": opts.logSink ? "info" : "error",
  }, () => undefined);
  let ctl: RunningController;
  try {
    ctl = await within(
      startController(cfg, {
        logSink: opts.logSink,
        print: () => {},
        onPeersChanged: opts.onPeersChanged,
      }),
      WAIT_MS,
      "the controller to start",
    );
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
  const link = (email: string, o: LinkOptions = {}) =>
    ctl.accounts.createTicket(email, { actor: o.actor, unbound: o.unbound }).url;
  let stopped: Promise<void> | undefined;
  const stop = () => stopped ??= within(ctl.shutdown(), WAIT_MS, "the controller to stop");
  return {
    ctl,
    dir,
    port: ctl.relays.embedded!.port,
    rootPem: pki.certPem(ctl.state.pki.cas.root.cert),
    invite(email, o = {}) {
      const user = ctl.accounts.createUser(o.actor ?? "cli:test", email);
      return { user, link: link(email, o) };
    },
    link,
    stop,
    async close() {
      try {
        await stop();
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}
