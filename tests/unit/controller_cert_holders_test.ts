/**
 * The one "certificate renewed" path: the renewal check hands each renewed
 * controller certificate to the parts holding it, and says in the log
 * whether the running controller took it up or a restart is needed.
 */
import assert from "node:assert/strict";
import { renewDueCertificates } from "../../controller/renewal.ts";
import {
  type ServiceCert,
  serviceCert,
  ServiceCertHolders,
  type ServiceCertName,
} from "../../controller/service_certs.ts";
import { openState } from "../../controller/state.ts";
import { createLogger } from "../../core/log.ts";
import * as pki from "../../core/pki/mod.ts";

const LATER = () => new Date(Date.now() + 300 * 86400_000);

const codes = (lines: string[], name: ServiceCertName) =>
  lines.filter((l) => l.includes(`"name":"${name}"`)).map((l) => JSON.parse(l).code);

Deno.test("cert holders: every holder of a name is told; false without one", async () => {
  const holders = new ServiceCertHolders();
  const got: string[] = [];
  const cert = { chainPem: "chain", keyPem: "key" } as ServiceCert;
  assert.equal(await holders.renewed("embedded-relay", cert), false);
  const release = holders.hold("embedded-relay", (c) => void got.push(`a:${c.chainPem}`));
  holders.hold("embedded-relay", async (c) => {
    await Promise.resolve();
    got.push(`b:${c.chainPem}`);
  });
  holders.hold("controller-client", () => void got.push("other"));
  assert.equal(await holders.renewed("embedded-relay", cert), true);
  assert.deepEqual(got.sort(), ["a:chain", "b:chain"]);
  release();
  got.length = 0;
  assert.equal(await holders.renewed("embedded-relay", cert), true);
  assert.deepEqual(got, ["b:chain"]);
});

Deno.test("cert holders: one failing holder does not keep the others from the new certificate", async () => {
  const holders = new ServiceCertHolders();
  const got: string[] = [];
  holders.hold("controller-server", () => {
    throw new Error("bad key");
  });
  holders.hold("controller-server", (c) => void got.push(c.keyPem));
  await assert.rejects(
    holders.renewed("controller-server", { chainPem: "c", keyPem: "k" } as ServiceCert),
    /bad key/,
  );
  assert.deepEqual(got, ["k"]);
});

Deno.test("renewal: taken up while running, else restart-to-renew; a failed reload is logged", async () => {
  const dir = await Deno.makeTempDir();
  const state = await openState(dir, { create: true });
  try {
    for (const name of ["controller-client", "controller-server", "embedded-relay"] as const) {
      await serviceCert(state, name);
    }
    const holders = new ServiceCertHolders();
    const taken: Record<string, string> = {};
    holders.hold("embedded-relay", (c) => void (taken["embedded-relay"] = pki.serialOf(c.leaf)));
    holders.hold("controller-server", () => {
      throw new Error("the server refused the key");
    });
    // Nobody holds controller-client here: it waits for a restart.
    const lines: string[] = [];
    const outcomes = await renewDueCertificates(state, {
      log: createLogger("renewal", { sink: (l) => lines.push(l) }),
      now: LATER,
      reload: holders.renewed,
    });
    // Renewed and stored either way: the next start uses it.
    assert.ok(outcomes.every((o) => o.kind === "controller" && o.ok), JSON.stringify(outcomes));
    const serial = (n: ServiceCertName) => outcomes.find((o) => o.name === n)!.serial!;
    assert.equal(taken["embedded-relay"], serial("embedded-relay"));
    assert.equal(
      pki.serialOf((await serviceCert(state, "embedded-relay")).leaf),
      taken["embedded-relay"],
    );
    assert.deepEqual(codes(lines, "embedded-relay"), ["cert-reloaded", undefined]);
    assert.deepEqual(codes(lines, "controller-server"), [
      "cert-reload-failed",
      "restart-to-renew",
      undefined,
    ]);
    assert.deepEqual(codes(lines, "controller-client"), ["restart-to-renew", undefined]);
    // Without a running controller to tell (the CLI, tests), every one says restart.
    const again: string[] = [];
    await renewDueCertificates(state, {
      log: createLogger("renewal", { sink: (l) => again.push(l) }),
      now: LATER,
    });
    assert.equal(again.filter((l) => l.includes('"code":"restart-to-renew"')).length, 3);
  } finally {
    state.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("service certs: a read never renews a due certificate (the renewal check alone does, and tells the holders); an expired one is replaced", async () => {
  const dir = await Deno.makeTempDir();
  const state = await openState(dir, { create: true });
  try {
    const first = await serviceCert(state, "controller-client");
    const dueAt = LATER();
    assert.ok(pki.renewalDue(first.leaf, dueAt) && dueAt < first.leaf.notAfter);
    // The fleet driver's identity check and onboarding read it while renewal is due: same one.
    const read = await serviceCert(state, "controller-client", undefined, dueAt);
    assert.equal(pki.serialOf(read.leaf), pki.serialOf(first.leaf));
    // The renewal check renews it and is the one to tell the running holders.
    const holders = new ServiceCertHolders();
    const told: string[] = [];
    holders.hold("controller-client", (c) => void told.push(pki.serialOf(c.leaf)));
    const outcomes = await renewDueCertificates(state, {
      log: createLogger("renewal", { sink: () => {} }),
      now: () => dueAt,
      reload: holders.renewed,
    });
    const renewed = outcomes.find((o) => o.name === "controller-client")!.serial!;
    assert.notEqual(renewed, pki.serialOf(first.leaf));
    assert.deepEqual(told, [renewed]);
    assert.equal(pki.serialOf((await serviceCert(state, "controller-client")).leaf), renewed);
    // A controller started again after its certificate expired gets a valid one on the read.
    const current = (await serviceCert(state, "controller-client")).leaf;
    const expired = new Date(current.notAfter.getTime() + 1000);
    const fresh = await serviceCert(state, "controller-client", undefined, expired);
    assert.notEqual(pki.serialOf(fresh.leaf), renewed);
    assert.ok(fresh.leaf.notBefore <= expired && expired < fresh.leaf.notAfter);
  } finally {
    state.close();
    await Deno.remove(dir, { recursive: true });
  }
});
