/** Login throttle keys: IPv6 sources count per /64, IPv4 (also v4-mapped) per address. */
import assert from "node:assert/strict";
import { accountKey, sourceKey } from "../../controller/api/throttle.ts";

Deno.test("throttle keys: one /64 is one source; v4-mapped is the v4 address", () => {
  assert.equal(sourceKey("2001:db8:1:2:aaaa::1"), sourceKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"));
  assert.notEqual(sourceKey("2001:db8:1:2::1"), sourceKey("2001:db8:1:3::1"));
  assert.equal(sourceKey("2001:db8:1:2::1"), "source:2001:db8:1:2::/64");
  assert.equal(sourceKey("2001:0DB8:0001:0002::9"), "source:2001:db8:1:2::/64");
  assert.equal(sourceKey("::ffff:192.0.2.7"), "source:192.0.2.7");
  assert.equal(sourceKey("192.0.2.7"), "source:192.0.2.7");
  assert.equal(accountKey("ann@example.com"), "account:ann@example.com");
});
