/**
 * "Accounts": enrollment claims and profile fetches per second through the
 * controller's embedded relay (TLS, HTTP/2, the relay's checks, the
 * controller's device guard) against the same Accounts call made in
 * process; and the time to regenerate, reseal and store the profiles of a
 * user with 10 devices on 10 nodes against sealing the same 10 profiles
 * alone.
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { resolveConfig } from "../../controller/config.ts";
import { startController } from "../../controller/serve.ts";
import { Nodes } from "../../controller/service/nodes.ts";
import { Service } from "../../controller/service/service.ts";
import { toBase64 } from "../../core/encoding.ts";
import * as pki from "../../core/pki/mod.ts";
import { generateEncryptionKeyPair, openProfile, sealProfile } from "../../core/seal/mod.ts";
import { ACCOUNT_PROTO, loadProto } from "../../proto/load.ts";
import { claimOf, type ClientKeys, clientKeys } from "../support/accounts_fixture.ts";
import { type BenchModule, type Figure, figure, opsPerSecond } from "./harness.ts";

const ADMIN = "cli:bench";
const CLAIMS = 25;
const WARMUP = 2;
const PACE_MS = 600;
// deno-lint-ignore no-explicit-any
const accountPkg = (grpc.loadPackageDefinition(loadProto(ACCOUNT_PROTO)) as any).pharos.account.v1;

// deno-lint-ignore no-explicit-any
function call(client: any, method: string, req: unknown, md = new grpc.Metadata()): Promise<any> {
  return new Promise((resolve, reject) =>
    client[method](
      req,
      md,
      { deadline: Date.now() + 30_000 },
      (err: unknown, res: unknown) => err ? reject(err) : resolve(res),
    )
  );
}

/**
 * Calls per second of `fn` from the time spent in the calls alone, one at a
 * time, `PACE_MS` apart (the first WARMUP calls are not counted).
 */
async function pacedPerSecond(fn: () => Promise<unknown>, calls: number): Promise<number> {
  let spent = 0;
  for (let i = 0; i < calls; i++) {
    await new Promise((r) => setTimeout(r, PACE_MS));
    const start = performance.now();
    await fn();
    if (i >= WARMUP) spent += performance.now() - start;
  }
  return (calls - WARMUP) / (spent / 1000);
}

export const accountsBench: BenchModule = {
  section: "Accounts",
  notes: "Claims are timed one at a time, 0.6 s apart: the relay admits 2 certificate-less " +
    "calls per second per connection and 4 per source address (abuse limits), so that is the " +
    "real ceiling through one relay from one address; the figure is the rate the work " +
    "itself would allow. Each claim issues a Device-CA leaf (ECDSA P-384 signature), creates a peer per node " +
    "and seals the new device's profile; each user in the claim runs has one device. The " +
    "reseal figure covers reading peers, unsealing 100 preshared keys, building, sealing " +
    "and storing 10 profiles (one per device, 10 nodes each) in audited transactions.",
  async run(): Promise<Figure[]> {
    const dir = await Deno.makeTempDir();
    const cfg = resolveConfig(
      { state: `${dir}/state`, "ui-listen": "127.0.0.1:0", "relay-listen": "127.0.0.1:0" },
      () => undefined,
    );
    const ctl = await startController(cfg, { logSink: () => {} });
    // deno-lint-ignore no-explicit-any
    const clients: any[] = [];
    try {
      const a = ctl.accounts;
      const port = ctl.relays.embedded!.port;
      const rootPem = pki.certPem(ctl.state.pki.cas.root.cert);
      const nodes = new Nodes(new Service(ctl.state.db));
      for (let i = 0; i < 10; i++) {
        const n = nodes.create(ADMIN, { name: `node-${i}`, host: `203.0.113.${i + 1}` });
        await a.nodeKeyObserved(n.id, toBase64(generateEncryptionKeyPair().publicKey));
      }
      let users = 0;
      const prepared = async (n: number) => {
        const out: { token: string; keys: ClientKeys }[] = [];
        for (let i = 0; i < n; i++) {
          const email = `u${users++}@example.com`;
          a.createUser(ADMIN, email);
          const token = new URL(a.createTicket(email, { unbound: true }).url).searchParams.get(
            "token",
          )!;
          out.push({ token, keys: await clientKeys() });
        }
        return out;
      };

      // Claims: bare, then through the relay.
      const bareClaims = await prepared(CLAIMS + WARMUP);
      let bareAt = 0;
      const bareClaim = await pacedPerSecond(
        () => a.claim(claimOf(bareClaims[bareAt].token, bareClaims[bareAt++].keys)),
        CLAIMS + WARMUP,
      );
      const claimClient = new accountPkg.AccountSync(
        `localhost:${port}`,
        grpc.credentials.createSsl(Buffer.from(rootPem)),
      );
      clients.push(claimClient);
      const relayClaims = await prepared(CLAIMS + WARMUP);
      let relayAt = 0;
      let lastCert: { pem: string; keys: ClientKeys } | undefined;
      // The relay admits 2 certificate-less calls per second per connection (its abuse
      // limit): claims are paced to stay under it, and only the calls are timed.
      const relayClaim = await pacedPerSecond(async () => {
        const { token, keys } = relayClaims[relayAt++];
        const md = new grpc.Metadata();
        md.set("pharos-wg-public-key", toBase64(keys.wg!.publicKey));
        const res = await call(claimClient, "ClaimEnrollment", {
          token,
          csr_pem: Buffer.from(keys.csrPem),
          device_name: "phone",
          platform: "caravel",
          encryption_pubkey: Buffer.from(keys.encryption.publicKey),
        }, md);
        lastCert = { pem: new TextDecoder().decode(res.device_cert_pem), keys };
      }, CLAIMS + WARMUP);

      // Profile fetches of one device: bare, then through the relay with its certificate.
      const fp = await pki.deviceFingerprint(pki.parseCertificate(lastCert!.pem));
      const bareFetch = await opsPerSecond(() => a.getProfile({ fingerprint: fp }), {
        minMs: 1500,
      });
      const deviceClient = new accountPkg.AccountSync(
        `localhost:${port}`,
        grpc.credentials.createSsl(
          Buffer.from(rootPem),
          Buffer.from(lastCert!.keys.keyPem),
          Buffer.from(lastCert!.pem + pki.certPem(ctl.state.pki.cas.device.cert)),
        ),
      );
      clients.push(deviceClient);
      const relayFetch = await opsPerSecond(() => call(deviceClient, "GetProfile", {}), {
        minMs: 1500,
      });

      // Reseal: one user, 10 devices, 10 nodes.
      a.createUser(ADMIN, "ten@example.com");
      for (let i = 0; i < 10; i++) {
        const token = new URL(a.createTicket("ten@example.com", { unbound: true }).url).searchParams
          .get("token")!;
        await a.claim(claimOf(token, await clientKeys()));
      }
      const userId = a.users.find("ten@example.com")!.id;
      const reseal = 1000 / await opsPerSecond(() => a.reprovision(userId), {
        warmup: 1,
        maxIters: 10,
        minMs: 1,
      });
      // A 10-node profile, decrypted: the baseline seals the same bytes.
      const plaintext = await openProfile(
        (await a.getProfile({ fingerprint: fp })).ciphertext,
        lastCert!.keys.encryption.privateKey,
        a.signing.publicKey,
      );
      const recipient = generateEncryptionKeyPair().publicKey;
      const sealOnly = 1000 / await opsPerSecond(async () => {
        for (let i = 0; i < 10; i++) await sealProfile(plaintext, recipient, a.signing.privateKey);
      }, { warmup: 1, maxIters: 50, minMs: 500 });

      return [
        figure(
          "ClaimEnrollment through the embedded relay",
          relayClaim,
          "claims/s",
          "Accounts.claim in process",
          bareClaim,
        ),
        figure(
          "GetProfile through the embedded relay",
          relayFetch,
          "fetches/s",
          "Accounts.getProfile in process",
          bareFetch,
        ),
        figure(
          "reseal + store profiles: 1 user, 10 devices, 10 nodes",
          reseal,
          "ms",
          "sealing 10 profiles of the same size alone",
          sealOnly,
          { lowerIsBetter: true },
        ),
      ];
    } finally {
      for (const c of clients) c.close();
      // Let the closed client sessions finish before the relay goes away.
      await new Promise((r) => setTimeout(r, 500));
      await ctl.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
};
