/** Password hashes (the original's PHC form) and the join link's relay address. */
import assert from "node:assert/strict";
import { hashPassword, verifyPassword } from "../../controller/accounts/passwords.ts";
import { relayEndpoint } from "../../controller/accounts/relay_endpoint.ts";
import { AccountError } from "../../controller/accounts/errors.ts";

Deno.test("accounts: passwords are Argon2id PHC strings with the original's parameters; wrong, malformed and missing hashes fail", async () => {
  const hash = await hashPassword("a good long password");
  assert.match(hash, /^\$argon2id\$v=19\$m=65536,t=1,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.ok(!hash.includes("a good long password"));
  assert.equal(await verifyPassword("a good long password", hash), true);
  assert.equal(await verifyPassword("a good long passworD", hash), false);
  assert.equal(await verifyPassword("a good long password", null), false);
  assert.equal(await verifyPassword("a good long password", "$argon2id$garbage"), false);
  assert.equal(await verifyPassword("x".repeat(5000), hash), false);
  await assert.rejects(
    hashPassword("short"),
    (e: unknown) => e instanceof AccountError && e.code === "invalid",
  );
  await assert.rejects(
    hashPassword("y".repeat(1025)),
    (e: unknown) => e instanceof AccountError && e.code === "invalid",
  );
});

Deno.test("accounts: the relay address of join links comes from the relay settings and the bound port", () => {
  assert.deepEqual(
    relayEndpoint({ relayHosts: "vpn.example.com,203.0.113.5", relayListen: ":443" }),
    {
      addr: "vpn.example.com:443",
      serverName: "vpn.example.com",
    },
  );
  assert.deepEqual(relayEndpoint({ relayHosts: "localhost", relayListen: "127.0.0.1:0" }, 40123), {
    addr: "localhost:40123",
    serverName: "localhost",
  });
  assert.equal(relayEndpoint({ relayHosts: "::1", relayListen: "[::1]:8443" }).addr, "[::1]:8443");
});
