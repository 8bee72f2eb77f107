import assert from "node:assert/strict";
import {
  allocateInnerLink,
  computePathMtu,
  DEFAULT_UNDERLAY_MTU,
  INNER_LINK_BASE,
  INNER_LINK_MTU,
  innerLinkSlot,
  MAX_INNER_LINK_INDEX,
  MTU_MIN,
  originalCascadeMtu,
  WG_OVERHEAD,
} from "../../core/dataplane/mod.ts";
import { assertRejects } from "./dataplane_golden.ts";

Deno.test("inner links: awg{i+1}, port 51820+i, mark = table = 7100+i", () => {
  for (const i of [0, 1, 7, MAX_INNER_LINK_INDEX]) {
    const s = innerLinkSlot(i);
    assert.equal(s.interfaceName, `awg${i + 1}`);
    assert.equal(s.listenPort, INNER_LINK_BASE.port + i);
    assert.equal(s.mark, INNER_LINK_BASE.markAndTable + i);
    assert.equal(s.table, s.mark);
  }
  assert.equal(innerLinkSlot(0).interfaceName, "awg1");
  assert.equal(innerLinkSlot(0).listenPort, 51820);
  assert.equal(innerLinkSlot(0).mark, 7100);
  for (const bad of [-1, MAX_INNER_LINK_INDEX + 1, 1.5, "0"]) {
    assertRejects(() => innerLinkSlot(bad as number), "out-of-range", "index");
  }
});

Deno.test("inner links: the smallest free index is allocated", () => {
  assert.equal(allocateInnerLink([]).index, 0);
  assert.equal(allocateInnerLink([0, 1, 3]).index, 2);
  assert.equal(allocateInnerLink(new Set([1, 2])).index, 0);
  const all = Array.from({ length: MAX_INNER_LINK_INDEX + 1 }, (_, i) => i);
  assertRejects(() => allocateInnerLink(all), "no-free-inner-link", "innerLinks");
});

Deno.test("path MTU: single node is the client leg; cascades are capped by the inner link", () => {
  assert.equal(computePathMtu([{ id: "a", family: 6 }]).mtu, DEFAULT_UNDERLAY_MTU - WG_OVERHEAD[6]);
  assert.equal(computePathMtu([{ id: "a", family: 4 }]).mtu, DEFAULT_UNDERLAY_MTU - WG_OVERHEAD[4]);
  const two = computePathMtu([{ id: "a", family: 6 }, { id: "b", family: 6 }]);
  assert.equal(two.mtu, INNER_LINK_MTU);
  assert.deepEqual(two.segments.map((s) => [s.from, s.to]), [["client", "a"], ["a", "b"]]);
  const three = computePathMtu([{ id: "a", family: 4 }, { id: "b", family: 6 }, {
    id: "c",
    family: 4,
  }]);
  assert.equal(three.mtu, INNER_LINK_MTU);
  assert.equal(three.segments[2].capacity, DEFAULT_UNDERLAY_MTU - WG_OVERHEAD[4]);
  // S4 padding is per transport packet, so it shrinks that segment.
  const s4 = 60;
  assert.equal(
    computePathMtu([{ id: "a", family: 6, s4 }]).mtu,
    DEFAULT_UNDERLAY_MTU - WG_OVERHEAD[6] - s4,
  );
  // A smaller inner-link MTU wins; a small underlay on one node limits both its segments.
  const small = computePathMtu(
    [{ id: "a", family: 6, underlayMtu: 1450 }, { id: "b", family: 4 }],
    {
      innerLinkMtu: 1300,
    },
  );
  assert.equal(small.segments[0].capacity, 1450 - WG_OVERHEAD[6]);
  assert.equal(small.segments[1].capacity, 1450 - WG_OVERHEAD[4]);
  assert.equal(small.mtu, 1300);
});

Deno.test("path MTU: typed errors for long paths, repeats and MTU below 1280", () => {
  const hop = (id: string) => ({ id, family: 6 as const });
  assertRejects(() => computePathMtu([]), "path-empty", "path");
  assertRejects(
    () => computePathMtu([hop("a"), hop("b"), hop("c"), hop("d")]),
    "path-too-long",
    "path",
  );
  assertRejects(
    () => computePathMtu([hop("a"), hop("b"), hop("a")]),
    "path-repeats-node",
    "path[2].id",
  );
  assertRejects(() => computePathMtu([{ id: "", family: 6 }]), "bad-hop", "path[0].id");
  assertRejects(() => computePathMtu([{ id: "a", family: 5 as 4 }]), "bad-hop", "path[0].family");
  // The client leg drops below 1280: 1360 − 80 = 1280 passes, 1359 − 80 does not.
  assert.equal(
    computePathMtu([hop("a")], { clientUnderlayMtu: MTU_MIN + WG_OVERHEAD[6] }).mtu,
    MTU_MIN,
  );
  assertRejects(
    () => computePathMtu([hop("a")], { clientUnderlayMtu: MTU_MIN + WG_OVERHEAD[6] - 1 }),
    "path-mtu-too-small",
    "path",
  );
  assertRejects(() => computePathMtu([{ ...hop("a"), s4: 150 }]), "path-mtu-too-small", "path");
  // An inner link cannot run at an MTU its underlay cannot carry.
  assertRejects(
    () =>
      computePathMtu([hop("a"), { ...hop("b"), underlayMtu: INNER_LINK_MTU + WG_OVERHEAD[6] - 1 }]),
    "inner-link-mtu-too-large",
    "path[1]",
  );
  assertRejects(
    () => computePathMtu([hop("a")], { innerLinkMtu: 1279 }),
    "out-of-range",
    "innerLinkMtu",
  );
  assertRejects(() => computePathMtu([{ ...hop("a"), s4: 2000 }]), "out-of-range", "path[0].s4");
});

Deno.test("original cascade MTU: 1420 − 80 × (nodes − 1), floor 576", () => {
  assert.deepEqual([1, 2, 3, 4, 5].map(originalCascadeMtu), [1420, 1340, 1260, 1180, 1100]);
  assert.equal(originalCascadeMtu(11), 620);
  assert.equal(originalCascadeMtu(12), 576);
  assert.equal(originalCascadeMtu(40), 576);
  for (const bad of [0, -1, 1.5, "3"]) {
    assertRejects(() => originalCascadeMtu(bad as number), "out-of-range", "nodes");
  }
});
