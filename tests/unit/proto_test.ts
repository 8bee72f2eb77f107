/**
 * proto/ matches the contract listing in shared/CONTRACTS.md field for field:
 * the listing is parsed from the document itself, so any drift fails here.
 */
import assert from "node:assert/strict";
import { ACCOUNT_PROTO, loadProto, NODE_PROTO } from "../../proto/load.ts";
import { capability } from "../support/capability.ts";

const contractsUrl = new URL("../../../shared/CONTRACTS.md", import.meta.url);
let contracts = "";
try {
  contracts = await Deno.readTextFile(contractsUrl);
} catch {
  // reported by the capability gate below
}
const cap = capability(
  "proto vs CONTRACTS.md",
  contracts.length > 0,
  `cannot read ${contractsUrl.pathname}`,
);

interface Listing {
  messages: Map<string, Map<string, { number: number; type: string; repeated: boolean }>>;
  enums: Map<string, Map<string, number>>;
  rpcs: Map<string, { req: string; res: string; stream: boolean }>;
}

function parseListing(doc: string, pkg: string): Listing {
  const block = [...doc.matchAll(/```proto\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) =>
    b.includes(`package ${pkg};`)
  );
  assert.ok(block, `no proto listing for ${pkg} in CONTRACTS.md`);
  const src = block.replace(/\/\/.*$/gm, "");
  const out: Listing = { messages: new Map(), enums: new Map(), rpcs: new Map() };
  for (const m of src.matchAll(/message\s+(\w+)\s*\{([^}]*)\}/g)) {
    const fields = new Map();
    for (const f of m[2].matchAll(/(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;/g)) {
      fields.set(f[3], { number: Number(f[4]), type: f[2], repeated: !!f[1] });
    }
    out.messages.set(m[1], fields);
  }
  for (const m of src.matchAll(/enum\s+(\w+)\s*\{([^}]*)\}/g)) {
    out.enums.set(
      m[1],
      new Map([...m[2].matchAll(/(\w+)\s*=\s*(\d+)/g)].map((v) => [v[1], Number(v[2])])),
    );
  }
  for (const r of src.matchAll(/rpc\s+(\w+)\s*\((\w+)\)\s*returns\s*\((stream\s+)?(\w+)\)/g)) {
    out.rpcs.set(r[1], { req: r[2], res: r[4], stream: !!r[3] });
  }
  return out;
}

type Def = Record<string, unknown>;
interface FieldDesc {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
const SCALAR: Record<string, string> = {
  TYPE_STRING: "string",
  TYPE_BOOL: "bool",
  TYPE_BYTES: "bytes",
  TYPE_UINT32: "uint32",
  TYPE_UINT64: "uint64",
  TYPE_INT64: "int64",
};

/**
 * PharosVPN's additive fields, not in the original contract (the original
 * programs ignore unknown fields): numbers after every contract field.
 */
const ADDITIONS: Record<string, Record<string, { number: number; type: string }>> = {
  NetworkConfig: { endpoint_ranges: { number: 5, type: "EndpointRange" } },
  SetNetworkConfigResponse: { endpoint_ranges: { number: 2, type: "EndpointRange" } },
};

function checkPackage(file: string, pkg: string, service: string) {
  const listing = parseListing(contracts, pkg);
  for (const [name, added] of Object.entries(pkg === "pharos.node.v1" ? ADDITIONS : {})) {
    const want = listing.messages.get(name)!;
    const used = Math.max(0, ...[...want.values()].map((f) => f.number));
    for (const [field, f] of Object.entries(added)) {
      assert.ok(f.number > used, `${name}.${field}: an addition must not reuse a contract number`);
      want.set(field, { ...f, repeated: true });
    }
  }
  const def = loadProto(file) as Def;
  let messages = 0, fields = 0;
  for (const [name, want] of listing.messages) {
    const entry = def[`${pkg}.${name}`] as { type: { field: FieldDesc[] } } | undefined;
    assert.ok(entry, `${pkg}.${name} missing from ${file}`);
    const got = entry.type.field;
    assert.equal(got.length, want.size, `${name}: field count`);
    for (const f of got) {
      const w = want.get(f.name);
      assert.ok(w, `${name}.${f.name} is not in CONTRACTS.md`);
      assert.equal(f.number, w.number, `${name}.${f.name} number`);
      assert.equal(f.label === "LABEL_REPEATED", w.repeated, `${name}.${f.name} repeated`);
      const t = SCALAR[f.type] ?? f.typeName.split(".").at(-1);
      assert.equal(t, w.type.split(".").at(-1), `${name}.${f.name} type`);
      fields++;
    }
    messages++;
  }
  for (const [name, values] of listing.enums) {
    const entry = def[`${pkg}.${name}`] as { type: { value: { name: string; number: number }[] } };
    assert.deepEqual(
      new Map(entry.type.value.map((v) => [v.name, v.number])),
      values,
      `enum ${name}`,
    );
  }
  const svc = def[`${pkg}.${service}`] as Record<
    string,
    {
      path: string;
      responseStream: boolean;
      requestType: { type: { name: string } };
      responseType: { type: { name: string } };
    }
  >;
  assert.deepEqual(Object.keys(svc).sort(), [...listing.rpcs.keys()].sort());
  for (const [name, rpc] of listing.rpcs) {
    assert.equal(svc[name].path, `/${pkg}.${service}/${name}`);
    assert.equal(svc[name].responseStream, rpc.stream, `${name} streaming`);
    assert.equal(svc[name].requestType.type.name, rpc.req);
    assert.equal(svc[name].responseType.type.name, rpc.res);
  }
  return { messages, fields, rpcs: listing.rpcs.size };
}

Deno.test({
  name: "proto: pharos.node.v1 matches CONTRACTS.md §1.2 field for field",
  ...cap,
  fn() {
    const n = checkPackage(NODE_PROTO, "pharos.node.v1", "NodeControl");
    assert.equal(n.rpcs, 11);
    assert.ok(n.messages >= 30 && n.fields >= 90, JSON.stringify(n));
  },
});

Deno.test({
  name: "proto: pharos.account.v1 matches CONTRACTS.md §2.1 field for field",
  ...cap,
  fn() {
    const n = checkPackage(ACCOUNT_PROTO, "pharos.account.v1", "AccountSync");
    assert.equal(n.rpcs, 4);
    assert.equal(n.messages, 8);
  },
});

Deno.test("proto: spot checks of field numbers the original programs depend on", () => {
  const node = loadProto(NODE_PROTO) as Def;
  const fieldsOf = (def: Def, name: string) =>
    Object.fromEntries(
      (def[name] as { type: { field: FieldDesc[] } }).type.field.map((f) => [f.name, f.number]),
    );
  assert.deepEqual(fieldsOf(node, "pharos.node.v1.Peer"), {
    id: 1,
    protocol: 2,
    public_key: 3,
    allowed_ips: 4,
    preshared_key: 5,
    endpoints: 6,
    flow: 7,
  });
  assert.equal(fieldsOf(node, "pharos.node.v1.Event").source_endpoint, 6);
  assert.equal(fieldsOf(node, "pharos.node.v1.AmneziaWGObfuscation").i5, 16);
  assert.equal(fieldsOf(node, "pharos.node.v1.GetStatusResponse").applied_revision, 6);
  const account = loadProto(ACCOUNT_PROTO) as Def;
  assert.deepEqual(fieldsOf(account, "pharos.account.v1.ClaimEnrollmentRequest"), {
    token: 1,
    csr_pem: 2,
    device_name: 3,
    platform: 4,
    encryption_pubkey: 5,
  });
  assert.equal(fieldsOf(account, "pharos.account.v1.GetProfileResponse").wrapped_private_key, 4);
});
