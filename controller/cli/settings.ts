/** `cox settings list|preset`. */
import type { CliIo } from "../../relay/host/cli_support.ts";
import { isPresetName, PRESET_NAMES, Settings } from "../service/settings.ts";
import { formatTable, UsageError } from "./format.ts";
import { withService } from "./with_state.ts";

export async function settingsList(state: string, io: CliIo): Promise<number> {
  const list = await withService(state, (svc) => new Settings(svc).list());
  io.out(formatTable(
    ["KEY", "VALUE", "VERSION", "UPDATED"],
    list.map((s) => [
      s.key,
      JSON.stringify(s.value),
      String(s.version),
      s.updatedAt?.toISOString() ?? "default (personal)",
    ]),
  ));
  return 0;
}

/** `cox settings preset NAME`: applies a preset to an existing state. */
export async function settingsPreset(
  state: string,
  name: string,
  actor: string,
  io: CliIo,
): Promise<number> {
  if (!isPresetName(name)) {
    throw new UsageError(`unknown preset "${name.slice(0, 40)}"; use ${PRESET_NAMES.join(" or ")}`);
  }
  const changed = await withService(state, (svc) => new Settings(svc).applyPreset(actor, name));
  io.out(
    `applied the ${name} preset: ${
      changed.length === 0 ? "nothing to change" : `changed ${changed.join(", ")}`
    }\n`,
  );
  return 0;
}
