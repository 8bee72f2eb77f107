/** Every island by the name pages use; shared by the server renderer and the browser bundle. */
import type { FunctionComponent } from "preact";
import { CopyButton } from "./copy_button.tsx";
import { OneTimeCreate } from "./one_time_create.tsx";
import { PolicyEditor } from "./policy_editor.tsx";
import { TotpSetup } from "./totp_setup.tsx";

// deno-lint-ignore no-explicit-any
export const ISLANDS: Record<string, FunctionComponent<any>> = {
  CopyButton,
  OneTimeCreate,
  PolicyEditor,
  TotpSetup,
};
