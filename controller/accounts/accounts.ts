/**
 * The accounts service: users' passwords, enrollment tickets, claims,
 * sessions, account keys, profiles and device revocation. Transport-free:
 * grpc_service.ts maps AccountSync calls onto it, the CLI and the admin API
 * call it directly. Every change goes through the service layer (audited).
 *
 * Identity of a device call: the relay-injected fingerprint, re-checked
 * here on every call (active, unexpired, bound to a user who is active),
 * plus, where a call needs it, a session token bound to that same device.
 */
import { fromBase64, toBase64 } from "../../core/encoding.ts";
import type { Logger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";
import { buildJoinLink, splitHostPort } from "../../core/profile/mod.ts";
import { decodeWrappedKey, generateEncryptionKeyPair, type KeyPair } from "../../core/seal/mod.ts";
import type { Devices } from "../devices.ts";
import type { Keystore } from "../keystore.ts";
import type { ControllerPki } from "../pki_store.ts";
import { type Actor, Service, SYSTEM_ACTOR } from "../service/service.ts";
import { normalizeEmail, type User, type UserRole, Users } from "../service/users.ts";
import { type Db, statement } from "../db/sqlite.ts";
import { AccountError, INVALID_CREDENTIALS } from "./errors.ts";
import { LoginLimits } from "./login_limits.ts";
import { hashPassword, verifyPassword } from "./passwords.ts";
import {
  canonicalWgKey,
  type NodeKeys,
  PROFILE_TTL_MS,
  Provisioning,
  wgKeyLabel,
} from "./provisioning.ts";
import { Sessions } from "./sessions.ts";
import { profileSigningKey } from "./signing_key.ts";
import { TICKET_TTL_MS, Tickets } from "./tickets.ts";
import { checkClaim, type ClaimInput } from "./claim_input.ts";
import { verifyClaimMac } from "../../core/profile/claim_binding.ts";
import { KeyChallenges } from "./key_challenges.ts";
import { keyChallengeBinding } from "../../core/client/account_key.ts";
import { allocateTunnelIp } from "./tunnel_ips.ts";
import type { ResealProgress } from "../onboarding/events.ts";
import { PharosError } from "../../core/errors.ts";

export const ACCOUNTS_ACTOR: Actor = "system:accounts";
/** A reseal of many profiles reports each device up to this many, then every 1/this of them. */
const RESEAL_STEPS = 50;
/** Failed devices named one by one in a reseal's events; the rest are only counted. */
const MAX_FAILED_EVENTS = 20;
/** How long a key-replacement challenge may be answered. */

export interface AccountsOptions {
  db: Db;
  keystore: Keystore;
  pki: ControllerPki;
  devices: Devices;
  /**
   * The relay clients enroll through: `host:port` and the TLS name on its
   * certificate (a function when known only once the relay listens).
   */
  relay: RelayEndpoint | (() => RelayEndpoint);
  /** Called with the nodes whose peers changed (the reconcile loop's nudge). */
  onPeersChanged?: (nodeIds: string[]) => void;
  /** A node's AmneziaWG public key (default: a column of `nodes` when there is one). */
  nodeKeys?: NodeKeys;
  now?: () => Date;
  log?: Logger;
}

export interface RelayEndpoint {
  addr: string;
  serverName?: string;
}

/** Who calls: the relay-verified device and, when sent, the session token. */
export interface DeviceCaller {
  /** `x-pharos-device-fp`, as the relay injected it; undefined when absent. */
  fingerprint?: string;
  /** `pharos-session`, when sent. */
  token?: string;
}

/**
 * ClaimEnrollment's fields; `wgPublicKey` (base64) absent = the controller
 * makes the key; `claimMac` = `pharos-claim-mac`, required by a bound ticket.
 */
export type ClaimRequest = ClaimInput & { claimMac?: string };

/** Why a bound ticket's claim without a valid MAC is refused (nothing is consumed). */
export const CLAIM_MAC_REFUSED =
  "this enrollment ticket is bound to its link: the claim needs a valid pharos-claim-mac " +
  "(use a client that reads the link's bind parameter, or create the ticket with --unbound)";

export interface ClaimResult {
  deviceId: string;
  userId: string;
  deviceCertPem: string;
  fleetCaPem: string;
  relayAddr: string;
  relayServerName: string;
  caFingerprint: string;
  signingPublicKey: Uint8Array;
}

export interface ProfileResult {
  ciphertext: Uint8Array;
  revision: number;
  signingPublicKey: Uint8Array;
  wrappedPrivateKey: Uint8Array;
}

export interface CreatedTicket {
  /** `pharosvpn://enroll?[bind=…&]ca=…&relay=…&token=…` */
  url: string;
  ticketId: string;
  userId: string;
  expiresAt: Date;
}

/** A device as `cox devices list` shows it (no key material). */
export interface DeviceSummary {
  id: string;
  userId: string | null;
  email: string | null;
  name: string | null;
  platform: string | null;
  status: "active" | "disabled" | "revoked";
  tunnelIp: string | null;
  fingerprint: string;
  notAfter: Date;
  createdAt: Date;
  /** Revision of its latest sealed profile; null before the first. */
  profileRevision: number | null;
}

interface CallerDevice {
  id: string;
  userId: string;
  encryptionPublicKey: Uint8Array | null;
}

export class Accounts {
  readonly service: Service;
  readonly users: Users;
  readonly tickets: Tickets;
  readonly sessions: Sessions;
  readonly provisioning: Provisioning;
  readonly #limits: LoginLimits;
  readonly #now: () => Date;
  readonly #challenges: KeyChallenges;

  private constructor(private readonly o: AccountsOptions, readonly signing: KeyPair) {
    this.#now = o.now ?? (() => new Date());
    this.service = new Service(o.db);
    this.users = new Users(this.service);
    this.tickets = new Tickets(this.service);
    this.sessions = new Sessions(this.service, ACCOUNTS_ACTOR);
    this.#limits = new LoginLimits(this.service, ACCOUNTS_ACTOR);
    this.#challenges = new KeyChallenges(signing);
    this.provisioning = new Provisioning({
      service: this.service,
      keystore: o.keystore,
      signing,
      actor: ACCOUNTS_ACTOR,
      fleetId: o.pki.rootFingerprint,
      nodeKeys: o.nodeKeys,
      onPeersChanged: o.onPeersChanged,
      now: this.#now,
      log: o.log,
    });
  }

  /** Opens the service; makes the profile-signing key on first use. */
  static async open(o: AccountsOptions): Promise<Accounts> {
    if (typeof o.relay !== "function") splitRelay(o.relay.addr);
    const signing = await profileSigningKey(new Service(o.db), o.keystore, ACCOUNTS_ACTOR);
    return new Accounts(o, signing);
  }

  // ---- operators (CLI, admin API) ----

  /** Adds a user (role `user` or `admin`). */
  createUser(actor: Actor, email: string, role: UserRole = "user"): User {
    return this.users.add(actor, { email, role });
  }

  /** Sets (or replaces) a user's login password. */
  async setPassword(actor: Actor, email: string, password: string): Promise<User> {
    const user = this.#user(email);
    const hash = await hashPassword(password);
    this.service.mutate(
      { actor, action: "user.passwd", target: { type: "user", id: user.id } },
      (tx) => tx.update({ password_hash: hash }),
    );
    return this.users.find(user.id)!;
  }

  /**
   * Creates an enrollment ticket for `email` and returns its join link
   * (shown once). Bound by default (§7.3 c: the link carries a secret the
   * claim must MAC its keys with, so a relay that sees the token cannot
   * redeem it with keys of its own); `unbound` for the original app, which
   * sends no MAC — weaker: whoever sees the token in transit can claim it.
   */
  createTicket(
    email: string,
    opts: { actor?: Actor; ttlMs?: number; unbound?: boolean } = {},
  ): CreatedTicket {
    const user = this.#user(email);
    if (user.status !== "active") {
      throw new AccountError("precondition", `user ${user.email} is disabled; enable it first`);
    }
    const { ticket, token, bind } = this.tickets.create(
      opts.actor ?? SYSTEM_ACTOR,
      user.id,
      this.#now(),
      opts.ttlMs ?? TICKET_TTL_MS,
      !opts.unbound,
    );
    const url = buildJoinLink({
      ca: this.o.pki.rootFingerprint,
      relay: this.#relay().addr,
      token,
      bind,
    });
    return { url, ticketId: ticket.id, userId: user.id, expiresAt: ticket.expiresAt };
  }

  /**
   * Revokes a device: its certificate goes on the revocation list (relays
   * get it pushed), its sessions end, its peers are removed (the nodes are
   * told) and the user's other devices get freshly sealed profiles.
   */
  async revokeDevice(
    deviceId: string,
    actor: Actor = SYSTEM_ACTOR,
    reason?: string,
  ): Promise<void> {
    const device = this.o.devices.get(deviceId);
    if (!device) throw new AccountError("not-found", `no device ${deviceId}`);
    this.o.devices.revoke(deviceId, { actor, reason });
    this.sessions.endForDevice(deviceId);
    const nodes = this.provisioning.removePeers(deviceId);
    this.service.mutate(
      { actor, action: "device.release_ip", target: { type: "device", id: deviceId } },
      (tx) => {
        if ((tx.current as { tunnel_ip?: string | null })?.tunnel_ip) {
          tx.update({ tunnel_ip: null });
        }
      },
    );
    this.provisioning.notify(nodes);
    if (device.userId) await this.provisioning.sync(device.userId);
  }

  /**
   * Disables (reversible) or re-enables a device. A disabled device is
   * refused on every call and loses its peers on the nodes; enabling it
   * gives them back and reseals its profile.
   */
  async setDeviceStatus(
    deviceId: string,
    status: "active" | "disabled",
    actor: Actor = SYSTEM_ACTOR,
  ): Promise<void> {
    const device = this.o.devices.setStatus(deviceId, status, undefined, actor);
    if (status === "disabled") {
      this.sessions.endForDevice(deviceId);
      this.provisioning.notify(this.provisioning.removePeers(deviceId));
    }
    if (device.userId) await this.provisioning.sync(device.userId);
  }

  /** The devices of one user (by id or e-mail), or of everyone. */
  listDevices(userRef?: string): DeviceSummary[] {
    const userId = userRef === undefined ? undefined : this.#user(userRef).id;
    const rows = statement(
      this.o.db,
      `SELECT d.id, d.user_id, u.email, d.name, d.platform, d.status, d.tunnel_ip, d.fingerprint,
              d.not_after, d.created_at,
              (SELECT revision FROM sealed_profiles p WHERE p.device_id = d.id) AS revision
       FROM devices d LEFT JOIN users u ON u.id = d.user_id
       WHERE ? IS NULL OR d.user_id = ? ORDER BY u.email_key, d.created_at`,
    ).all(userId ?? null, userId ?? null) as Record<string, string | number | null>[];
    return rows.map((r) => ({
      id: String(r.id),
      userId: r.user_id === null ? null : String(r.user_id),
      email: r.email === null ? null : String(r.email),
      name: r.name === null ? null : String(r.name),
      platform: r.platform === null ? null : String(r.platform),
      status: String(r.status) as DeviceSummary["status"],
      tunnelIp: r.tunnel_ip === null ? null : String(r.tunnel_ip),
      fingerprint: String(r.fingerprint),
      notAfter: new Date(String(r.not_after)),
      createdAt: new Date(String(r.created_at)),
      profileRevision: r.revision === null ? null : Number(r.revision),
    }));
  }

  /** Regenerates and reseals the profiles of a user's devices (after a node change, …). */
  async reprovision(userId: string): Promise<void> {
    await this.provisioning.sync(userId);
  }

  /**
   * Regenerates every user's peers and profiles (a node added, removed or
   * re-keyed, or confirming other endpoint ranges). A device that fails does
   * not stop the others; afterwards an error names how many failed (each is
   * logged). An aborted `signal` stops it between two devices.
   */
  async reprovisionAll(signal?: AbortSignal): Promise<void> {
    await this.resealProfiles({
      signal,
      // Every failure, not only the ones the progress events name (MAX_FAILED_EVENTS).
      onFailure: (deviceId, error) =>
        this.o.log?.error("profile not resealed", {
          code: "reseal-failed",
          device: deviceId,
          error,
        }),
    });
  }

  /**
   * Reseals the profiles of every active device (only `userId`'s with it)
   * as a long operation. `emit` hears a `started`, `progress` events ("n of
   * m devices resealed": each device up to RESEAL_STEPS devices, else every
   * 1/RESEAL_STEPS of them), a `failed` per device that could not be
   * resealed (at most MAX_FAILED_EVENTS; the others go on; `onFailure`
   * hears every one) and a closing `finished`. The audit log names `actor`
   * (default: the accounts service). Throws after the end when any device
   * failed; an aborted `signal` stops it between two devices.
   */
  async resealProfiles(
    opts: {
      userId?: string;
      run?: string;
      emit?: (e: ResealProgress) => void;
      onFailure?: (deviceId: string, error: string) => void;
      actor?: Actor;
      signal?: AbortSignal;
    } = {},
  ): Promise<{ total: number; failed: number }> {
    if (opts.userId !== undefined) {
      const u = statement(this.o.db, "SELECT id FROM users WHERE id = ?").get(opts.userId);
      if (!u) throw new AccountError("not-found", `no user ${opts.userId.slice(0, 80)}`);
    }
    const run = opts.run ?? crypto.randomUUID();
    const emit = opts.emit ?? (() => {});
    const event = (
      status: ResealProgress["status"],
      o: { done: number; failed: number; total: number },
      message: string,
      extra: Partial<ResealProgress> = {},
    ): ResealProgress => ({
      run,
      kind: "reseal",
      status,
      done: o.done,
      failed: o.failed,
      total: o.total,
      ...(opts.userId !== undefined ? { user_id: opts.userId } : {}),
      message,
      time: this.#now().toISOString(),
      ...extra,
    });
    let failed = 0;
    let started = false;
    let lastStep = 0;
    const { total } = await this.provisioning.resealMany(
      opts.userId ?? null,
      (o) => {
        if (!started) {
          started = true;
          emit(event("started", { done: 0, failed: 0, total: o.total }, `${o.total} to reseal`));
        }
        if (o.error !== undefined) {
          failed++;
          opts.onFailure?.(o.deviceId, o.error);
          if (failed <= MAX_FAILED_EVENTS) {
            emit(event(
              "failed",
              { done: o.done, failed, total: o.total },
              `device ${o.deviceId}: ${o.error}`,
              { device_id: o.deviceId, code: "reseal-failed" },
            ));
          }
        }
        const step = Math.floor((o.done * RESEAL_STEPS) / o.total);
        if (o.total <= RESEAL_STEPS || step !== lastStep || o.done === o.total) {
          lastStep = step;
          emit(event(
            "progress",
            { done: o.done, failed, total: o.total },
            `${o.done - failed} of ${o.total} devices resealed${
              failed ? `, ${failed} failed` : ""
            }`,
          ));
        }
      },
      opts.actor,
      opts.signal,
    );
    if (!started) emit(event("started", { done: 0, failed: 0, total }, "nothing to reseal"));
    const resealed = total - failed;
    emit(event(
      "finished",
      { done: total, failed, total },
      failed === 0
        ? `${resealed} of ${total} devices resealed`
        : `${resealed} of ${total} devices resealed, ${failed} failed`,
    ));
    if (failed > 0) {
      throw new PharosError(
        "reseal-failed",
        `${failed} of ${total} device profiles could not be resealed (the others were; ` +
          "the failed ones are named in the progress events: reseal again)",
      );
    }
    return { total, failed };
  }

  /**
   * Records the AmneziaWG public key a node reports (GetStatus) and, when
   * it changed, reseals every profile so clients get the node's new key.
   */
  async nodeKeyObserved(
    nodeId: string,
    awgPublicKey: string,
    actor: Actor = SYSTEM_ACTOR,
  ): Promise<void> {
    let key: string;
    try {
      key = canonicalWgKey(awgPublicKey);
    } catch {
      throw new AccountError(
        "invalid",
        `node ${nodeId} reported an AmneziaWG key that is not base64 of 32 bytes`,
      );
    }
    const changed = this.service.mutate(
      { actor, action: "node.awg_key", target: { type: "node", id: nodeId } },
      (tx) => {
        if (!tx.current) throw new AccountError("not-found", `no node ${nodeId}`);
        if ((tx.current as { awg_public_key?: string | null }).awg_public_key === key) return false;
        tx.update({ awg_public_key: key });
        return true;
      },
    );
    if (changed) await this.reprovisionAll();
  }

  // ---- AccountSync ----

  /**
   * Authenticate: `email` empty → certificate login of the calling device;
   * else the password of that e-mail, which must be the account the calling
   * device belongs to. Rate-limited per account and per source.
   */
  async authenticate(
    caller: DeviceCaller,
    email: string,
    password: string,
  ): Promise<{ token: string; userId: string; keysEnrolled: boolean }> {
    const now = this.#now();
    const device = this.#device(caller);
    if (email === "") {
      const { token } = this.sessions.create(device.userId, device.id, "device", now);
      return { token, userId: device.userId, keysEnrolled: this.#hasAccountKey(device.userId) };
    }
    let key: string;
    try {
      key = normalizeEmail(email).key;
    } catch {
      throw new AccountError("unauthenticated", INVALID_CREDENTIALS);
    }
    const limitKeys = [`account:${key}`, `source:${caller.fingerprint}`];
    this.#limits.check(limitKeys, now);
    const row = statement(
      this.o.db,
      "SELECT id, status, password_hash FROM users WHERE email_key = ?",
    ).get(key) as { id: string; status: string; password_hash: string | null } | undefined;
    // The hash is checked whatever the account, so timing tells nothing.
    const ok = await verifyPassword(password, row?.password_hash ?? null);
    if (!ok || !row || row.status !== "active" || row.id !== device.userId) {
      this.#limits.fail(limitKeys, now);
      throw new AccountError("unauthenticated", INVALID_CREDENTIALS);
    }
    this.#limits.clear(limitKeys);
    const { token } = this.sessions.create(row.id, device.id, "password", now);
    return { token, userId: row.id, keysEnrolled: this.#hasAccountKey(row.id) };
  }

  /**
   * EnrollKeys: stores the account public key and its passphrase-wrapped
   * private key. Needs a session bound to the calling device. An
   * existing, different key is replaced only with proof of the old one:
   * the first attempt gets a challenge sealed to the old key
   * (`precondition`, metadata `pharos-key-challenge`); the client opens it
   * and repeats the call with the nonce as `proof` (§7.3).
   */
  async enrollKeys(
    caller: DeviceCaller,
    publicKey: Uint8Array,
    wrappedPrivateKey: Uint8Array,
    proof?: string,
  ): Promise<void> {
    const now = this.#now();
    const device = this.#device(caller);
    this.sessions.resolve(caller.token ?? "", device.id, now);
    if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
      throw new AccountError("invalid", "public_key must be a raw 32-byte X25519 key");
    }
    try {
      decodeWrappedKey(wrappedPrivateKey);
    } catch (e) {
      throw new AccountError("invalid", `wrapped_private_key: ${(e as Error).message}`);
    }
    const user = statement(
      this.o.db,
      "SELECT public_key, wrapped_private_key FROM users WHERE id = ?",
    )
      .get(device.userId) as { public_key: Uint8Array | null; wrapped_private_key: string | null };
    const wrapped = new TextDecoder().decode(wrappedPrivateKey);
    if (user.public_key) {
      const old = new Uint8Array(user.public_key);
      if (equalBytes(old, publicKey) && user.wrapped_private_key === wrapped) return;
      const binding = keyChallengeBinding(publicKey, wrappedPrivateKey);
      if (!this.#challenges.take(device.userId, proof, binding, now)) {
        throw new AccountError(
          "precondition",
          "an account key exists: answer the challenge sealed to it (metadata pharos-key-challenge) in pharos-key-proof",
          {
            "pharos-key-challenge": await this.#challenges.issue(device.userId, old, binding, now),
          },
        );
      }
    }
    this.service.mutate(
      {
        actor: `api:user:${device.userId}`,
        action: "user.enroll_keys",
        target: { type: "user", id: device.userId },
      },
      (tx) => tx.update({ public_key: publicKey, wrapped_private_key: wrapped }),
    );
  }

  /** GetProfile: the calling device's latest sealed profile (resealed when missing or old). */
  async getProfile(caller: DeviceCaller): Promise<ProfileResult> {
    const now = this.#now();
    const device = this.#device(caller);
    if (caller.token) this.sessions.resolve(caller.token, device.id, now);
    const read = () =>
      statement(
        this.o.db,
        "SELECT revision, ciphertext, expires_at FROM sealed_profiles WHERE device_id = ?",
      )
        .get(device.id) as
          | { revision: number; ciphertext: Uint8Array; expires_at: string }
          | undefined;
    let row = read();
    if (!row || Date.parse(row.expires_at) - now.getTime() < PROFILE_TTL_MS / 2) {
      await this.provisioning.sync(device.userId);
      row = read();
    }
    if (!row) {
      throw new AccountError("not-found", "no profile for this device yet; try again shortly");
    }
    const wrapped = device.encryptionPublicKey
      ? ""
      : ((statement(this.o.db, "SELECT wrapped_private_key AS w FROM users WHERE id = ?")
        .get(device.userId) as { w: string | null }).w ?? "");
    return {
      ciphertext: new Uint8Array(row.ciphertext),
      revision: Number(row.revision),
      signingPublicKey: this.signing.publicKey,
      wrappedPrivateKey: new TextEncoder().encode(wrapped),
    };
  }

  /**
   * Exit selection for cascades, asked by the device itself: its traffic
   * entering at a node with a path to `exitNodeId` leaves there (`null`:
   * where it enters). The entry nodes are told (the reconcile loop rebinds
   * the transit route) and the device's profile is resealed.
   */
  async selectExit(caller: DeviceCaller, exitNodeId: string | null): Promise<void> {
    const device = this.#device(caller);
    if (caller.token) this.sessions.resolve(caller.token, device.id, this.#now());
    const touched = this.provisioning.bindExit(device.id, exitNodeId);
    if (touched.length === 0) return;
    this.provisioning.notify([...new Set(touched)]);
    await this.provisioning.sync(device.userId);
  }

  /**
   * ClaimEnrollment (certificate-less): input checked first (nothing
   * consumed on bad input), the ticket looked at (a bound ticket's MAC
   * checked: refused without consuming it), a Device-CA leaf issued,
   * then in one transaction the ticket redeemed (one winner) and the device
   * recorded for the ticket's user; then its peers and profile.
   */
  async claim(req: ClaimRequest): Promise<ClaimResult> {
    const input = await checkClaim(req);
    let wgPublic = input.wgPublicKey;
    const now = this.#now();
    const ticket = this.tickets.peek(req.token, now);
    if (ticket.claimMacKey) {
      const macOk = typeof req.claimMac === "string" &&
        verifyClaimMac(ticket.claimMacKey, {
          csrPem: req.csrPem,
          encryptionPublicKey: req.encryptionPublicKey,
          wireguardPublicKey: wgPublic === undefined ? undefined : fromBase64(wgPublic),
        }, req.claimMac);
      if (!macOk) {
        this.o.log?.warn("claim of a bound ticket without a valid MAC refused", {
          code: "claim-mac-refused",
          ticket_id: ticket.id,
          mac_sent: req.claimMac !== undefined,
        });
        throw new AccountError("unauthenticated", CLAIM_MAC_REFUSED);
      }
    }
    const owner = this.users.find(ticket.userId);
    if (!owner || owner.status !== "active") {
      throw new AccountError("unauthenticated", INVALID_CREDENTIALS);
    }
    const cert = await pki.issueLeaf(this.o.pki.cas, input.publicKey, {
      kind: "device",
      name: input.name,
    });
    const fingerprint = await pki.deviceFingerprint(cert);
    const deviceId = crypto.randomUUID();
    let wgSealed: Uint8Array | null = null;
    if (!wgPublic) {
      const wg = generateEncryptionKeyPair();
      wgPublic = toBase64(wg.publicKey);
      wgSealed = await this.o.keystore.seal(wg.privateKey, wgKeyLabel(deviceId));
      wg.privateKey.fill(0);
    }
    this.service.transaction(() => {
      // A WireGuard key names one peer per node: another device's key would clash there.
      if (
        statement(
          this.o.db,
          "SELECT 1 FROM devices WHERE wg_public_key = ? AND status <> 'revoked'",
        )
          .get(wgPublic!)
      ) {
        throw new AccountError(
          "invalid",
          "this WireGuard public key belongs to another device; make a new key pair",
        );
      }
      this.tickets.redeem(ACCOUNTS_ACTOR, req.token, deviceId, this.#now());
      this.service.mutate(
        {
          actor: ACCOUNTS_ACTOR,
          action: "device.enroll",
          target: { type: "device", id: deviceId },
          expectVersion: 0,
        },
        (tx) =>
          tx.insert({
            user_id: ticket.userId,
            fingerprint,
            serial: pki.serialOf(cert),
            status: "active",
            not_after: cert.notAfter.toISOString(),
            created_at: tx.now,
            name: input.name,
            platform: input.platform,
            encryption_public_key: req.encryptionPublicKey,
            wg_public_key: wgPublic!,
            wg_private_sealed: wgSealed,
            tunnel_ip: allocateTunnelIp(tx.db),
          }),
      );
    });
    try {
      await this.provisioning.sync(ticket.userId);
    } catch (e) {
      // The device stays enrolled; GetProfile provisions again.
      this.o.log?.error("provisioning after a claim failed", {
        code: "provision-failed",
        device_id: deviceId,
        error: e,
      });
    }
    const relay = this.#relay();
    return {
      deviceId,
      userId: ticket.userId,
      deviceCertPem: pki.certPem(cert),
      fleetCaPem: pki.certPem(this.o.pki.cas.fleet.cert),
      relayAddr: relay.addr,
      relayServerName: relay.serverName ?? splitRelay(relay.addr).host,
      caFingerprint: this.o.pki.rootFingerprint,
      signingPublicKey: this.signing.publicKey,
    };
  }

  // ---- internals ----

  #relay(): RelayEndpoint {
    return typeof this.o.relay === "function" ? this.o.relay() : this.o.relay;
  }

  /** The calling device, re-checked here (the relay may not know a revocation). */
  #device(caller: DeviceCaller): CallerDevice {
    const fp = caller.fingerprint;
    if (!fp) throw new AccountError("unauthenticated", "this call needs a device certificate");
    const verdict = this.o.devices.check(fp, this.#now());
    const row = verdict.ok
      ? statement(
        this.o.db,
        `SELECT d.id, d.user_id, d.encryption_public_key, u.status AS user_status
         FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?`,
      ).get(verdict.device.id) as
        | {
          id: string;
          user_id: string;
          encryption_public_key: Uint8Array | null;
          user_status: string;
        }
        | undefined
      : undefined;
    if (!row || row.user_status !== "active") {
      throw new AccountError("unauthenticated", "this device is not authorised");
    }
    return {
      id: row.id,
      userId: row.user_id,
      encryptionPublicKey: row.encryption_public_key
        ? new Uint8Array(row.encryption_public_key)
        : null,
    };
  }

  #user(ref: string): User {
    const user = this.users.find(ref);
    if (!user) throw new AccountError("not-found", `no user ${ref}; add it with "cox users add"`);
    return user;
  }

  #hasAccountKey(userId: string): boolean {
    return statement(this.o.db, "SELECT 1 FROM users WHERE id = ? AND public_key IS NOT NULL")
      .get(userId) !== undefined;
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function splitRelay(addr: string): { host: string; port: number } {
  const hp = splitHostPort(addr);
  if (!hp) throw new AccountError("invalid", `relay address "${addr}" is not host:port`);
  return hp;
}
