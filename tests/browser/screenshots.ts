/**
 * Where the dashboard tests put their screenshots: a test-output folder
 * outside the repository, so a run never dirties the checked-in tree —
 * `$PHAROS_TEST_OUTPUT/screenshots` when set (CI can keep it as an
 * artifact), else a fresh temp directory. The copies in ui/screenshots/
 * (shown by the README) are replaced only when asked:
 *
 *   PHAROS_UPDATE_SCREENSHOTS=1 deno test -A tests/browser/
 */
export const CHECKED_IN = new URL("../../ui/screenshots/", import.meta.url).pathname;

/** Makes (if needed) and returns this run's screenshot folder. */
export async function screenshotDir(): Promise<string> {
  const base = Deno.env.get("PHAROS_TEST_OUTPUT");
  if (!base) return await Deno.makeTempDir({ prefix: "pharos-screenshots-" });
  const dir = `${base}/screenshots`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/**
 * Says where the screenshots are; with PHAROS_UPDATE_SCREENSHOTS=1 also
 * copies them over ui/screenshots/.
 */
export async function publishScreenshots(dir: string): Promise<void> {
  if (Deno.env.get("PHAROS_UPDATE_SCREENSHOTS") !== "1") {
    console.log(
      `screenshots in ${dir} (PHAROS_UPDATE_SCREENSHOTS=1 copies them to ui/screenshots/)`,
    );
    return;
  }
  await Deno.mkdir(CHECKED_IN, { recursive: true });
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".png")) {
      await Deno.copyFile(`${dir}/${e.name}`, `${CHECKED_IN}${e.name}`);
    }
  }
  console.log(`screenshots copied to ${CHECKED_IN}`);
}
