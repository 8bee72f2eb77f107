/**
 * Trusted-proxy matching (addresses and CIDR prefixes, IPv4-mapped peers)
 * and the checks of the dashboard's proxy, origin and metrics settings:
 * every bad value is refused with the setting's name, nothing half-applied.
 */
import assert from "node:assert/strict";
import { proxyMatcher } from "../../controller/api/proxies.ts";
import { ConfigError, listSetting, resolveConfig } from "../../controller/config.ts";
import { NetError } from "../../core/net/errors.ts";

Deno.test("api proxies: addresses and prefixes match their peers and no others", () => {
  const m = proxyMatcher(["10.1.2.3", "192.168.0.0/16", "2001:db8::/32", "::1"]);
  for (const yes of ["10.1.2.3", "::ffff:10.1.2.3", "192.168.255.1", "2001:db8:1::7", "::1"]) {
    assert.equal(m(yes), true, yes);
  }
  for (
    const no of [
      "10.1.2.4",
      "192.169.0.1",
      "2001:db9::1",
      "127.0.0.1",
      "::ffff:192.0.2.1",
      "not an address",
      "",
      undefined,
    ]
  ) {
    assert.equal(m(no), false, String(no));
  }
  // An IPv4 prefix does not match an IPv6 peer with the same leading bytes.
  assert.equal(proxyMatcher(["0.0.0.0/0"])("::1"), false);
  assert.equal(proxyMatcher(["0.0.0.0/0"])("203.0.113.9"), true);
  assert.equal(proxyMatcher(["10.0.0.0/9"])("10.127.0.1"), true);
  assert.equal(proxyMatcher(["10.0.0.0/9"])("10.128.0.1"), false);
  assert.equal(proxyMatcher([])("127.0.0.1"), false, "nobody is trusted by default");
  assert.throws(() => proxyMatcher(["10.0.0.1/8"]), NetError);
  assert.throws(() => proxyMatcher(["proxy.example"]), NetError);
});

Deno.test("api proxies: the settings take lists from flag, env or file and refuse bad entries", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  const d = resolveConfig({}, env({}));
  assert.deepEqual([d.trustedProxies, d.allowedOrigins, d.metricsLoopback], ["", "", "off"]);
  const c = resolveConfig(
    { "trusted-proxies": "10.0.0.2, 10.8.0.0/16", "metrics-loopback": "on" },
    env({ PHAROS_ALLOWED_ORIGINS: "https://vpn.example.net,http://localhost:5173" }),
  );
  assert.deepEqual(listSetting(c.trustedProxies), ["10.0.0.2", "10.8.0.0/16"]);
  assert.deepEqual(listSetting(c.allowedOrigins), [
    "https://vpn.example.net",
    "http://localhost:5173",
  ]);
  assert.equal(c.metricsLoopback, "on");
  const f = resolveConfig({}, env({}), { trustedProxies: "::1", metricsLoopback: "off" });
  assert.equal(f.trustedProxies, "::1");

  const bad: [Record<string, string>, Record<string, string>, RegExp][] = [
    [
      { "trusted-proxies": "proxy.example" },
      {},
      /^--trusted-proxies = .*"proxy\.example" is not an IP/,
    ],
    [{ "trusted-proxies": "10.0.0.1/8" }, {}, /"10\.0\.0\.1\/8" is not an IP address or CIDR/],
    [{}, { PHAROS_TRUSTED_PROXIES: "10.0.0.0/33" }, /^PHAROS_TRUSTED_PROXIES = /],
    [{ "allowed-origins": "https://vpn.example.net/" }, {}, /is not an origin/],
    [{ "allowed-origins": "vpn.example.net" }, {}, /is not an origin/],
    [{ "allowed-origins": "ftp://vpn.example.net" }, {}, /is not an origin/],
    [{}, { PHAROS_METRICS_LOOPBACK: "yes" }, /^PHAROS_METRICS_LOOPBACK = "yes": use on or off/],
  ];
  for (const [flags, vars, want] of bad) {
    assert.throws(
      () => resolveConfig(flags, env(vars)),
      (e: unknown) => e instanceof ConfigError && want.test(e.message),
      JSON.stringify([flags, vars]),
    );
  }
});
