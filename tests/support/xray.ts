/**
 * Xray for tests: built in test setup from the Go module proxy
 * (`go install github.com/xtls/xray-core/main@<version>`) through
 * go_tool.ts, which caches it outside the repository and renames it into
 * place atomically. Suites gate on Go being present (goCapability): with Go
 * there, the build must succeed — a failure fails the suite instead of
 * skipping it. On a fresh machine the first build takes minutes.
 */
import type { Capability } from "./capability.ts";
import { buildGoTool } from "./go_tool.ts";
import { goCapability } from "./go_peer.ts";

export const XRAY_MODULE = "github.com/xtls/xray-core/main";
export const XRAY_VERSION = "v1.260327.0";

export function xrayCapability(suite: string): Capability {
  return goCapability(suite);
}

/** The path of a built xray (the binary is named `main`, after its package). */
export function buildXray(): Promise<string> {
  return buildGoTool(`${XRAY_MODULE}@${XRAY_VERSION}`);
}
