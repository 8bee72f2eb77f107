/**
 * X25519 and Ed25519 through WebCrypto (Secure Curves), which runs them
 * natively — several times faster than a pure-JS implementation, which
 * matters for sealing and opening profiles. Keys are raw 32-byte values;
 * private keys are wrapped in the fixed RFC 8410 PKCS#8 header to import them.
 */

const X25519_PKCS8 = Uint8Array.fromHex("302e020100300506032b656e04220420");
const ED25519_PKCS8 = Uint8Array.fromHex("302e020100300506032b657004220420");
/** The X25519 base point u = 9. */
const BASE_POINT = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 9 : 0));

function pkcs8(prefix: Uint8Array, raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(prefix.length + raw.length);
  out.set(prefix);
  out.set(raw, prefix.length);
  return out;
}

function buffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}

/**
 * X25519(privateKey, u) for each `u` in `publicKeys` (RFC 7748, scalar
 * clamped internally), computed concurrently from one imported key. An
 * entry is undefined when its result is all-zero (a low-order point) or the
 * point is unusable. Never rejects.
 */
export async function x25519Many(
  privateKey: Uint8Array,
  publicKeys: Uint8Array[],
): Promise<(Uint8Array | undefined)[]> {
  let priv: CryptoKey;
  try {
    priv = await crypto.subtle.importKey(
      "pkcs8",
      pkcs8(X25519_PKCS8, privateKey),
      { name: "X25519" },
      false,
      ["deriveBits"],
    );
  } catch {
    return publicKeys.map(() => undefined);
  }
  return await Promise.all(publicKeys.map(async (publicKey) => {
    try {
      const pub = await crypto.subtle.importKey(
        "raw",
        buffer(publicKey),
        { name: "X25519" },
        false,
        [],
      );
      const bits = await crypto.subtle.deriveBits({ name: "X25519", public: pub }, priv, 256);
      return new Uint8Array(bits);
    } catch {
      return undefined;
    }
  }));
}

/** X25519(privateKey, publicKey); undefined for an all-zero result or unusable point. */
export async function x25519(
  privateKey: Uint8Array,
  publicKey: Uint8Array,
): Promise<Uint8Array | undefined> {
  return (await x25519Many(privateKey, [publicKey]))[0];
}

/**
 * An ephemeral key's public half X25519(e, 9) and its shared secret with
 * `peerPublicKey`, computed concurrently; `shared` is undefined for a
 * low-order peer key.
 */
export async function x25519Ephemeral(
  ephemeralKey: Uint8Array,
  peerPublicKey: Uint8Array,
): Promise<{ publicKey: Uint8Array; shared: Uint8Array | undefined }> {
  const [publicKey, shared] = await x25519Many(ephemeralKey, [BASE_POINT, peerPublicKey]);
  if (!publicKey) throw new Error("X25519 base-point multiplication failed");
  return { publicKey, shared };
}

/** Ed25519 signature (RFC 8032, pure) of `message` under a 32-byte seed. */
export async function ed25519Sign(seed: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey(
    "pkcs8",
    pkcs8(ED25519_PKCS8, seed),
    { name: "Ed25519" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, buffer(message)));
}

/** Verifies an Ed25519 signature; false for any invalid key, signature or message. */
export async function ed25519Verify(
  publicKey: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey(
      "raw",
      buffer(publicKey),
      { name: "Ed25519" },
      false,
      [
        "verify",
      ],
    );
    return await crypto.subtle.verify({ name: "Ed25519" }, key, buffer(signature), buffer(message));
  } catch {
    return false;
  }
}
