/**
 * Admin accounts of the dashboard and API: admins are users with role
 * `admin` and an Argon2id password. This module holds the rules; every
 * write goes through the service layer (audited, versioned).
 *
 * - First admin: a one-time setup token (printed at the first start, or by
 *   `cox admins add`), valid 24 h, stored as its SHA-256 only.
 * - Sign-in: password, then (when enrolled) a TOTP code or a recovery code.
 *   A password accepted for an account with TOTP yields a `totp` stage
 *   session (5 min) that can do nothing but finish the second factor; the
 *   finished sign-in gets a new session id (no fixation).
 * - Sessions: cookie `<id>.<secret>` (SHA-256 of the secret stored), idle
 *   and absolute expiry, revocable one by one or all of a user at once.
 * - TOTP (RFC 6238, SHA-1, 6 digits, 30 s, ±1 step): the secret is sealed
 *   with secret.key; a code is never accepted twice (last step kept).
 *   Ten recovery codes, shown once, stored as SHA-256, each usable once.
 */
import * as OTPAuth from "otpauth";
import { renderSVG } from "uqr";
import type { Keystore } from "../keystore.ts";
import { normalizeEmail, type User, Users } from "../service/users.ts";
import type { Actor, Service } from "../service/service.ts";
import { ConflictError } from "../service/errors.ts";
import { ApiError } from "./errors.ts";
import {
  digest,
  hashPassword,
  MAX_PASSWORD,
  MIN_PASSWORD,
  PASSWORD_COST,
  type PasswordCost,
  randomSecret,
  sameSecret,
  verifyPassword,
} from "./secrets.ts";
import { accountKey, LoginThrottle, sourceKey, THROTTLE, type ThrottlePolicy } from "./throttle.ts";

export interface SessionTimes {
  idleMs: number;
  absoluteMs: number;
  /** Lifetime of a session waiting for its second factor. */
  pendingMs: number;
  /** last_seen_at is written at most this often (idle expiry is this coarse). */
  touchMs: number;
}

export const SESSION_TIMES: SessionTimes = {
  idleMs: 30 * 60_000,
  absoluteMs: 12 * 3600_000,
  pendingMs: 5 * 60_000,
  touchMs: 60_000,
};

export const SETUP_TTL_MS = 24 * 3600_000;
const RECOVERY_CODES = 10;
const TOTP_PERIOD = 30;

export type Stage = "totp" | "full";

export interface AdminSession {
  id: string;
  userId: string;
  stage: Stage;
  source: string | null;
  userAgent: string | null;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  revokedAt: string | null;
}

export interface SignedIn {
  session: AdminSession;
  /** The cookie value `<id>.<secret>`: shown to the client once. */
  cookie: string;
  user: User;
}

export interface AdminAuthOptions {
  service: Service;
  keystore: Keystore;
  clock?: () => Date;
  times?: Partial<SessionTimes>;
  throttle?: Partial<ThrottlePolicy>;
  passwordCost?: PasswordCost;
  /** Issuer shown by authenticator apps. */
  issuer?: string;
}

interface SessionRow {
  id: string;
  user_id: string;
  secret_hash: string;
  stage: Stage;
  source: string | null;
  user_agent: string | null;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  revoked_at: string | null;
}

function toSession(r: SessionRow): AdminSession {
  return {
    id: r.id,
    userId: r.user_id,
    stage: r.stage,
    source: r.source,
    userAgent: r.user_agent,
    createdAt: r.created_at,
    lastSeenAt: r.last_seen_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
  };
}

const badCredentials = () =>
  new ApiError(401, "bad-credentials", "the e-mail address or the password is wrong");

export class AdminAuth {
  readonly service: Service;
  readonly users: Users;
  readonly throttle: LoginThrottle;
  readonly times: SessionTimes;
  readonly clock: () => Date;
  readonly #keystore: Keystore;
  readonly #cost: PasswordCost;
  readonly #issuer: string;
  /** Verified against unknown accounts so they take as long as known ones. */
  #decoy: Promise<string> | undefined;

  constructor(opts: AdminAuthOptions) {
    this.service = opts.service;
    this.users = new Users(opts.service);
    this.clock = opts.clock ?? (() => new Date());
    this.times = { ...SESSION_TIMES, ...opts.times };
    this.throttle = new LoginThrottle(opts.service, this.clock, { ...THROTTLE, ...opts.throttle });
    this.#keystore = opts.keystore;
    this.#cost = opts.passwordCost ?? PASSWORD_COST;
    this.#issuer = opts.issuer ?? "PharosVPN";
  }

  get #db() {
    return this.service.db;
  }

  #now(): Date {
    return this.clock();
  }

  hasAdmin(): boolean {
    return this.#db.prepare(
      "SELECT 1 FROM users WHERE role = 'admin' AND password_hash IS NOT NULL",
    )
      .get() !== undefined;
  }

  // ---- setup links --------------------------------------------------------

  /** A one-time setup token for a new admin; the raw token is returned once. */
  createSetupToken(
    actor: Actor,
    ttlMs = SETUP_TTL_MS,
  ): { id: string; token: string; expiresAt: string } {
    const id = crypto.randomUUID();
    const token = randomSecret(24);
    const expiresAt = new Date(this.#now().getTime() + ttlMs).toISOString();
    this.service.mutate(
      {
        actor,
        action: "setup_token.create",
        target: { type: "setup_token", id },
        expectVersion: 0,
      },
      (tx) => tx.insert({ token_hash: digest(token), expires_at: expiresAt, created_at: tx.now }),
    );
    return { id, token, expiresAt };
  }

  /** Consumes a setup token: creates the admin with its password. */
  async setup(token: string, email: string, password: string): Promise<User> {
    checkPassword(password);
    const { key } = normalizeEmail(email);
    const row = this.#db.prepare("SELECT * FROM admin_setup_tokens WHERE token_hash = ?")
      .get(digest(token)) as Record<string, unknown> | undefined;
    const now = this.#now();
    if (!row || row.used_at !== null || Date.parse(String(row.expires_at)) <= now.getTime()) {
      throw new ApiError(
        401,
        "bad-setup-token",
        'this setup link is unknown, used or expired; make a new one with "cox admins add"',
      );
    }
    const hash = await hashPassword(password, this.#cost);
    const id = String(row.id);
    return this.service.transaction(() => {
      this.service.mutate(
        {
          actor: "system:api",
          action: "setup_token.use",
          target: { type: "setup_token", id },
          expectVersion: Number(row.version),
        },
        (tx) => tx.update({ used_at: tx.now, email: key }),
      );
      const user = this.users.add("system:setup", { email, role: "admin" });
      this.#setPasswordHash(`api:user:${user.id}`, user.id, hash);
      return this.users.find(user.id)!;
    });
  }

  /** Sets (or replaces) a user's password. */
  async setPassword(actor: Actor, userId: string, password: string): Promise<void> {
    checkPassword(password);
    this.#setPasswordHash(actor, userId, await hashPassword(password, this.#cost));
  }

  #setPasswordHash(actor: Actor, userId: string, hash: string): void {
    this.service.mutate(
      { actor, action: "user.password", target: { type: "user", id: userId } },
      (tx) => tx.update({ password_hash: hash }),
    );
  }

  // ---- sign-in ------------------------------------------------------------

  /**
   * Checks e-mail and password (throttled per account and per source).
   * Returns a full session, or a `totp` stage one when a second factor is due.
   */
  async login(
    email: string,
    password: string,
    source: string,
    userAgent: string | null,
  ): Promise<SignedIn> {
    const emailKey = email.normalize("NFC").trim().toLowerCase();
    const keys = [accountKey(emailKey), sourceKey(source)];
    this.throttle.check(keys);
    const row = this.#db.prepare(
      "SELECT id, password_hash FROM users WHERE email_key = ? AND role = 'admin' AND status = 'active'",
    ).get(emailKey) as { id: string; password_hash: string | null } | undefined;
    let ok: boolean;
    if (row?.password_hash) {
      ok = await verifyPassword(password, row.password_hash);
    } else {
      this.#decoy ??= hashPassword(randomSecret(), this.#cost);
      await verifyPassword(password, await this.#decoy);
      ok = false;
    }
    if (!ok || !row) {
      this.throttle.fail(keys);
      throw badCredentials();
    }
    const totp = this.#totpRow(row.id);
    const stage: Stage = totp?.confirmed_at ? "totp" : "full";
    if (stage === "full") this.throttle.clear(keys[0]);
    return this.#startSession(row.id, stage, source, userAgent);
  }

  /**
   * Finishes a `totp` stage sign-in with a TOTP or recovery code: the
   * pending session is revoked and a new full one returned.
   */
  async secondFactor(pending: AdminSession, code: string, source: string): Promise<SignedIn> {
    if (pending.stage !== "totp") {
      throw new ApiError(409, "not-pending", "this session needs no second factor");
    }
    const user = this.users.find(pending.userId)!;
    const keys = [accountKey(user.email.toLowerCase()), sourceKey(source)];
    this.throttle.check(keys);
    if (!(await this.#useCode(user, code))) {
      this.throttle.fail(keys);
      throw new ApiError(401, "bad-code", "the code is wrong or was used already", "code");
    }
    this.throttle.clear(keys[0]);
    return this.service.transaction(() => {
      this.revoke(`api:user:${pending.userId}`, pending.id);
      return this.#startSession(pending.userId, "full", source, pending.userAgent);
    });
  }

  #startSession(userId: string, stage: Stage, source: string, ua: string | null): SignedIn {
    const id = crypto.randomUUID();
    const secret = randomSecret();
    const now = this.#now();
    const life = stage === "full" ? this.times.absoluteMs : this.times.pendingMs;
    this.service.mutate(
      {
        actor: `api:user:${userId}`,
        action: "admin_session.create",
        target: { type: "admin_session", id },
        expectVersion: 0,
      },
      (tx) =>
        tx.insert({
          user_id: userId,
          secret_hash: digest(secret),
          stage,
          source: source.slice(0, 64),
          user_agent: ua?.slice(0, 256) ?? null,
          created_at: now.toISOString(),
          last_seen_at: now.toISOString(),
          expires_at: new Date(now.getTime() + life).toISOString(),
        }),
    );
    return {
      session: this.#session(id)!,
      cookie: `${id}.${secret}`,
      user: this.users.find(userId)!,
    };
  }

  #session(id: string): AdminSession | undefined {
    const r = this.#db.prepare("SELECT * FROM admin_sessions WHERE id = ?").get(id) as
      | SessionRow
      | undefined;
    return r ? toSession(r) : undefined;
  }

  /**
   * The live session a cookie names, with its user (still an active admin),
   * or undefined. Refreshes last_seen_at (at most once per touchMs).
   */
  resolve(cookie: string): { session: AdminSession; user: User } | undefined {
    const dot = cookie.indexOf(".");
    if (dot < 1 || cookie.length > 200) return undefined;
    const id = cookie.slice(0, dot);
    const r = this.#db.prepare("SELECT * FROM admin_sessions WHERE id = ?").get(id) as
      | SessionRow
      | undefined;
    if (!r || !sameSecret(r.secret_hash, digest(cookie.slice(dot + 1)))) return undefined;
    const now = this.#now().getTime();
    if (
      r.revoked_at !== null || Date.parse(r.expires_at) <= now ||
      Date.parse(r.last_seen_at) + this.times.idleMs <= now
    ) return undefined;
    const user = this.users.find(r.user_id);
    if (!user || user.role !== "admin" || user.status !== "active") return undefined;
    if (now - Date.parse(r.last_seen_at) >= this.times.touchMs) {
      this.service.mutate(
        {
          actor: `api:user:${user.id}`,
          action: "admin_session.touch",
          target: { type: "admin_session", id },
        },
        (tx) => tx.update({ last_seen_at: new Date(now).toISOString() }),
      );
      r.last_seen_at = new Date(now).toISOString();
    }
    return { session: toSession(r), user };
  }

  revoke(actor: Actor, sessionId: string): void {
    this.service.mutate(
      { actor, action: "admin_session.revoke", target: { type: "admin_session", id: sessionId } },
      (tx) => {
        if (tx.current && tx.current.revoked_at === null) tx.update({ revoked_at: tx.now });
      },
    );
  }

  /** Ends every session of a user ("log out everywhere"); returns how many. */
  revokeAll(actor: Actor, userId: string): number {
    const ids = (this.#db.prepare(
      "SELECT id FROM admin_sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ?",
    ).all(userId, this.#now().toISOString()) as { id: string }[]).map((r) => r.id);
    this.service.transaction(() => ids.forEach((id) => this.revoke(actor, id)));
    return ids.length;
  }

  /** Live sessions of a user (for the dashboard's "where am I signed in"). */
  sessionsOf(userId: string): AdminSession[] {
    const now = this.#now().toISOString();
    return (this.#db.prepare(
      "SELECT * FROM admin_sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at",
    ).all(userId, now) as unknown as SessionRow[]).map(toSession);
  }

  // ---- TOTP -------------------------------------------------------------

  #totpRow(userId: string) {
    return this.#db.prepare("SELECT * FROM admin_totp WHERE user_id = ?").get(userId) as
      | {
        secret_sealed: Uint8Array;
        confirmed_at: string | null;
        last_step: number;
        version: number;
      }
      | undefined;
  }

  totpEnabled(userId: string): boolean {
    return Boolean(this.#totpRow(userId)?.confirmed_at);
  }

  /**
   * Starts TOTP enrolment: a new secret (sealed at rest), its otpauth URI and
   * QR code, and ten recovery codes — all shown this once. TOTP is on only
   * after `confirmTotp` with a code from the app.
   */
  async enrollTotp(
    user: User,
  ): Promise<{ otpauthUri: string; qrSvg: string; recoveryCodes: string[] }> {
    if (this.totpEnabled(user.id)) {
      throw new ApiError(409, "totp-enabled", "two-factor sign-in is on already for this admin");
    }
    const secret = new OTPAuth.Secret({ size: 20 });
    const sealed = await this.#keystore.seal(new Uint8Array(secret.bytes), `totp:${user.id}`);
    const codes = Array.from({ length: RECOVERY_CODES }, () => recoveryCode());
    const actor = `api:user:${user.id}`;
    this.service.transaction(() => {
      this.service.mutate(
        { actor, action: "admin_totp.enroll", target: { type: "admin_totp", id: user.id } },
        (tx) => {
          const values = { secret_sealed: sealed, confirmed_at: null, last_step: 0 };
          if (tx.current) tx.update(values);
          else tx.insert({ ...values, created_at: tx.now });
        },
      );
      const old = this.#db.prepare("SELECT id FROM admin_recovery_codes WHERE user_id = ?")
        .all(user.id) as { id: string }[];
      for (const { id } of old) {
        this.service.mutate(
          { actor, action: "recovery_code.remove", target: { type: "recovery_code", id } },
          (tx) => tx.remove(),
        );
      }
      for (const code of codes) {
        const id = crypto.randomUUID();
        this.service.mutate(
          {
            actor,
            action: "recovery_code.create",
            target: { type: "recovery_code", id },
            expectVersion: 0,
          },
          (tx) =>
            tx.insert({
              user_id: user.id,
              code_hash: digest(normalizeCode(code)),
              created_at: tx.now,
            }),
        );
      }
    });
    const uri = this.#totp(user.email, secret).toString();
    return { otpauthUri: uri, qrSvg: renderSVG(uri), recoveryCodes: codes };
  }

  /** Turns TOTP on after a correct code from the freshly enrolled app. */
  async confirmTotp(user: User, code: string): Promise<void> {
    const row = this.#totpRow(user.id);
    if (!row) {
      throw new ApiError(
        409,
        "totp-not-enrolled",
        "start enrolment first (POST /api/auth/totp/enroll)",
      );
    }
    if (row.confirmed_at) {
      throw new ApiError(409, "totp-enabled", "two-factor sign-in is on already");
    }
    const step = await this.#matchTotp(user, row, code);
    if (step === undefined) {
      throw new ApiError(400, "bad-code", "the code does not match; check the app's clock", "code");
    }
    this.service.mutate(
      {
        actor: `api:user:${user.id}`,
        action: "admin_totp.confirm",
        target: { type: "admin_totp", id: user.id },
      },
      (tx) => tx.update({ confirmed_at: tx.now, last_step: step }),
    );
  }

  /**
   * Turns TOTP off for a signed-in admin who proves both factors again: the
   * password and a TOTP or recovery code (a stolen session alone cannot).
   * Failures count toward the sign-in throttle of the account and source.
   */
  async disableTotp(user: User, password: string, code: string, source: string): Promise<void> {
    if (!this.totpEnabled(user.id)) {
      throw new ApiError(409, "totp-not-enabled", "two-factor sign-in is not on for this admin");
    }
    const keys = [accountKey(user.email.toLowerCase()), sourceKey(source)];
    this.throttle.check(keys);
    const row = this.#db.prepare("SELECT password_hash FROM users WHERE id = ?").get(user.id) as
      | { password_hash: string | null }
      | undefined;
    if (!row?.password_hash || !(await verifyPassword(password, row.password_hash))) {
      this.throttle.fail(keys);
      throw new ApiError(403, "bad-password", "the password is wrong", "password");
    }
    if (!(await this.#useCode(user, code))) {
      this.throttle.fail(keys);
      throw new ApiError(403, "bad-code", "the code is wrong or was used already", "code");
    }
    this.throttle.clear(keys[0]);
    this.#removeTotp(`api:user:${user.id}`, user.id, "admin_totp.disable");
  }

  /**
   * The operator's reset for an admin who lost the device (`cox admins
   * reset-totp`): TOTP and recovery codes removed, every session ended.
   * Returns whether TOTP was set up (on or half-enrolled) and how many
   * sessions ended.
   */
  resetTotp(actor: Actor, userId: string): { hadTotp: boolean; sessionsEnded: number } {
    return this.service.transaction(() => {
      const hadTotp = this.#totpRow(userId) !== undefined;
      this.#removeTotp(actor, userId, "admin_totp.reset");
      return { hadTotp, sessionsEnded: this.revokeAll(actor, userId) };
    });
  }

  #removeTotp(actor: Actor, userId: string, action: string): void {
    this.service.transaction(() => {
      if (this.#totpRow(userId)) {
        this.service.mutate(
          { actor, action, target: { type: "admin_totp", id: userId } },
          (tx) => tx.remove(),
        );
      }
      const codes = this.#db.prepare("SELECT id FROM admin_recovery_codes WHERE user_id = ?")
        .all(userId) as { id: string }[];
      for (const { id } of codes) {
        this.service.mutate(
          { actor, action: "recovery_code.remove", target: { type: "recovery_code", id } },
          (tx) => tx.remove(),
        );
      }
    });
  }

  #totp(label: string, secret: OTPAuth.Secret): OTPAuth.TOTP {
    return new OTPAuth.TOTP({
      issuer: this.#issuer,
      label,
      algorithm: "SHA1",
      digits: 6,
      period: TOTP_PERIOD,
      secret,
    });
  }

  /** The time step a code matches (±1 step), if it is newer than the last one used. */
  async #matchTotp(
    user: User,
    row: { secret_sealed: Uint8Array; last_step: number },
    code: string,
  ): Promise<number | undefined> {
    if (!/^\d{6}$/.test(code)) return undefined;
    const bytes = await this.#keystore.open(row.secret_sealed, `totp:${user.id}`);
    const totp = this.#totp(
      user.email,
      new OTPAuth.Secret({ buffer: bytes.buffer as ArrayBuffer }),
    );
    const ts = this.#now().getTime();
    const delta = totp.validate({ token: code, timestamp: ts, window: 1 });
    if (delta === null) return undefined;
    const step = Math.floor(ts / 1000 / TOTP_PERIOD) + delta;
    return step > row.last_step ? step : undefined;
  }

  /** A TOTP code (not replayed) or an unused recovery code; consumes it. */
  async #useCode(user: User, code: string): Promise<boolean> {
    const row = this.#totpRow(user.id);
    if (!row?.confirmed_at || typeof code !== "string" || code.length > 64) return false;
    const actor = `api:user:${user.id}`;
    try {
      if (/^\d{6}$/.test(code.trim())) {
        const step = await this.#matchTotp(user, row, code.trim());
        if (step === undefined) return false;
        // expectVersion: of two concurrent uses of one code, only one passes
        this.service.mutate(
          {
            actor,
            action: "admin_totp.use",
            target: { type: "admin_totp", id: user.id },
            expectVersion: row.version,
          },
          (tx) => tx.update({ last_step: step }),
        );
        return true;
      }
      const rc = this.#db.prepare(
        "SELECT id, version FROM admin_recovery_codes WHERE user_id = ? AND code_hash = ? AND used_at IS NULL",
      ).get(user.id, digest(normalizeCode(code))) as { id: string; version: number } | undefined;
      if (!rc) return false;
      this.service.mutate(
        {
          actor,
          action: "recovery_code.use",
          target: { type: "recovery_code", id: rc.id },
          expectVersion: rc.version,
        },
        (tx) => tx.update({ used_at: tx.now }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConflictError) return false;
      throw e;
    }
  }

  /** Unused recovery codes left. */
  recoveryCodesLeft(userId: string): number {
    return Number(
      (this.#db.prepare(
        "SELECT COUNT(*) AS n FROM admin_recovery_codes WHERE user_id = ? AND used_at IS NULL",
      ).get(userId) as { n: number }).n,
    );
  }
}

/** A recovery code: 10 base32 characters in two groups, about 50 bits. */
function recoveryCode(): string {
  const alphabet = "abcdefghijkmnpqrstuvwxyz23456789";
  const raw = crypto.getRandomValues(new Uint8Array(10));
  const s = Array.from(raw, (b) => alphabet[b % 32]).join("");
  return `${s.slice(0, 5)}-${s.slice(5)}`;
}

function normalizeCode(code: string): string {
  return code.trim().toLowerCase().replaceAll(/[\s-]/g, "");
}

function checkPassword(password: string): void {
  if (typeof password !== "string" || password.length < MIN_PASSWORD) {
    throw new ApiError(
      400,
      "invalid",
      `a password needs at least ${MIN_PASSWORD} characters`,
      "password",
    );
  }
  if (password.length > MAX_PASSWORD) {
    throw new ApiError(
      400,
      "invalid",
      `a password has at most ${MAX_PASSWORD} characters`,
      "password",
    );
  }
}
