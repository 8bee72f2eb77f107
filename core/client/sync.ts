/**
 * Logging in and syncing the profile (CONTRACTS.md §2.3, §4.2–4.4) with the
 * trust rules of §7.3 and §7.9: the bundle is verified with the signing key
 * pinned at enrollment (a different key in the answer is refused, never
 * adopted), decrypted with the device's own key (or the account key
 * unwrapped with the user's passphrase), then refused if it is for another
 * user or fleet, older than a revision already accepted, or expired.
 */
import { checkProfileFreshness } from "../profile/freshness.ts";
import { type ProfileReadResult, readProfilePayload } from "../profile/schema.ts";
import { openProfile } from "../seal/bundle.ts";
import { unwrapPrivateKey } from "../seal/passphrase.ts";
import { enrollAccountKey } from "./account_key.ts";
import { relayAddress } from "./enroll.ts";
import { ClientError } from "./errors.ts";
import { relayLeafCheck } from "./relay_trust.ts";
import { parseCertificate } from "../pki/pem.ts";
import type { ClientState } from "./state.ts";
import {
  type AccountChannel,
  type AccountTransport,
  GRPC_UNAUTHENTICATED,
  type ProfileResponse,
} from "./transport.ts";

/** Options of {@link openProfileResponse} and {@link syncProfile}. */
export interface OpenOptions {
  /** Account passphrase, needed only when the profile is sealed to the account key. */
  passphrase?: string;
  now?: () => Date;
  /** Refuse profiles without an expiry (the original controller sets none). */
  requireExpiry?: boolean;
}

/** A profile accepted by the client, and the state to save with it. */
export interface SyncedProfile extends ProfileReadResult {
  state: ClientState;
}

/** An AccountSync channel to the device's relay, presenting its certificate. */
export function openChannel(
  transport: AccountTransport,
  state: ClientState,
  now: () => Date = () => new Date(),
): AccountChannel {
  const relay = relayAddress(state.relay);
  return transport.open(relay, {
    rootPem: state.rootPem,
    checkLeaf: relayLeafCheck(parseCertificate(state.fleetCaPem), relay.host, now),
    identity: { certPem: state.deviceCertPem, keyPem: state.deviceKeyPem },
  });
}

/**
 * Authenticates (device certificate, or `email`/`password`) and returns the
 * state with the session and the user pinned. The user id may not change.
 * With `passphrase` and an account that has no key yet, makes the account
 * X25519 key here, enrolls only its public half and its wrapped form, and
 * keeps the wrapped form in the state (see account_key.ts).
 */
export async function login(
  channel: AccountChannel,
  state: ClientState,
  creds: { email?: string; password?: string; passphrase?: string } = {},
): Promise<ClientState> {
  const auth = await channel.authenticate(creds.email ?? "", creds.password ?? "");
  if (!auth.sessionToken || !auth.userId) {
    throw new ClientError("bad-response", "Authenticate returned no session or user id");
  }
  if (state.user !== undefined && auth.userId !== state.user) {
    throw new ClientError(
      "bad-response",
      `the controller says this device belongs to "${auth.userId}", it was enrolled for "${state.user}"`,
    );
  }
  const next = { ...state, session: auth.sessionToken, user: auth.userId };
  if (!auth.keysEnrolled && creds.passphrase) {
    return await enrollAccountKey(channel, next, auth.sessionToken, {
      passphrase: creds.passphrase,
    });
  }
  return next;
}

/**
 * Verifies, decrypts and checks one GetProfile answer against the state.
 * Errors: `signing-key-changed`, SealError (`bad-signature`,
 * `wrong-recipient`, `tampered-ciphertext`, `wrong-passphrase`, …),
 * ProfileError (`stale-revision`, `expired`, `wrong-owner`, schema codes),
 * `passphrase-required`.
 */
export async function openProfileResponse(
  res: ProfileResponse,
  state: ClientState,
  opts: OpenOptions = {},
): Promise<SyncedProfile> {
  if (res.signingPublicKey.length > 0 && !sameBytes(res.signingPublicKey, state.signingKey)) {
    throw new ClientError(
      "signing-key-changed",
      "the controller's profile-signing key differs from the one pinned at enrollment; " +
        "the profile is refused (if the operator really rotated it, enroll this device again)",
    );
  }
  let recipient = state.encryptionKey;
  if (res.wrappedPrivateKey.length > 0) {
    if (!opts.passphrase) {
      throw new ClientError(
        "passphrase-required",
        "this profile is sealed to the account key: give the account passphrase",
      );
    }
    recipient = await unwrapPrivateKey(opts.passphrase, res.wrappedPrivateKey);
  }
  const plain = await openProfile(res.ciphertext, recipient, state.signingKey);
  const read = readProfilePayload(plain);
  checkProfileFreshness(read.document, {
    lastRevision: state.lastRevision,
    user: state.user,
    fleetId: state.fleetId,
    now: opts.now?.(),
    requireExpiry: opts.requireExpiry,
  });
  return {
    ...read,
    state: {
      ...state,
      lastRevision: Math.max(state.lastRevision ?? 0, read.document.revision),
      fleetId: read.document.fleet_id,
      user: state.user ?? read.document.user,
    },
  };
}

/**
 * Logs in when there is no session (or it was refused once), fetches the
 * profile and opens it with {@link openProfileResponse}.
 */
export async function syncProfile(
  transport: AccountTransport,
  state: ClientState,
  opts: OpenOptions = {},
): Promise<SyncedProfile> {
  const channel = openChannel(transport, state, opts.now);
  try {
    let current = state.session ? state : await login(channel, state);
    let res: ProfileResponse;
    try {
      res = await channel.getProfile(current.session!);
    } catch (e) {
      if (!(e instanceof ClientError && e.grpcCode === GRPC_UNAUTHENTICATED && state.session)) {
        throw e;
      }
      current = await login(channel, { ...current, session: undefined });
      res = await channel.getProfile(current.session!);
    }
    return await openProfileResponse(res, current, opts);
  } finally {
    channel.close();
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
