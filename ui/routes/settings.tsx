/** @jsxImportSource preact */
/**
 * Settings: each one its own form carrying the version it was loaded at
 * (409 if stale), and GeoIP: the database in use and a "Download now"
 * that starts the download as an operation (its page follows it live).
 * The GeoIP URL may hold a licence key: it is shown only with its
 * secrets hidden, and changed by typing a new one.
 */
import type { PageContext } from "./context.ts";
import { loadList } from "../lib/load.ts";
import { bool, bytes, field, num, type Obj, str, when } from "../lib/fields.ts";
import { Island } from "../components/island.tsx";
import { ApiForm } from "../components/forms.tsx";
import { KV, Notice, Table } from "../components/bits.tsx";

/** The GeoIP card; `geo` is null when this controller has no GeoIP store. */
function GeoipCard({ geo, csrf }: { geo: Obj | null; csrf: string }) {
  if (!geo) {
    return <p class="muted">GeoIP is not available in this controller.</p>;
  }
  const last = field(geo, "lastDownload") as Obj | null;
  const fileError = field(geo, "fileError") as Obj | null;
  return (
    <div class="card" data-geoip={bool(geo, "loaded") ? "loaded" : "none"}>
      <KV
        rows={[
          [
            "Database",
            bool(geo, "loaded")
              ? `${str(geo, "databaseType")} of ${str(geo, "buildDate").slice(0, 10)}`
              : "none: hosts are placed by their region code",
          ],
          ["Size", bytes(num(geo, "size"))],
          ["Loaded", when(field(geo, "loadedAt"))],
          ["Download URL", <code key="url">{str(geo, "url", "—")}</code>],
          [
            "Last download",
            last
              ? `${when(field(last, "at"))}: ${
                bool(last, "ok") ? "ok" : `failed (${str(last, "code")}) ${str(last, "error")}`
              }`
              : "never",
          ],
        ]}
      />
      {fileError && (
        <Notice kind="error">
          The file on disk is not used ({str(fileError, "code")}): {str(fileError, "message")}
        </Notice>
      )}
      {str(geo, "credit") && (
        <p class="muted">
          <a href="https://db-ip.com" rel="noopener noreferrer">{str(geo, "credit")}</a>
        </p>
      )}
      <ApiForm csrf={csrf} api="/api/geoip/download" back="/settings" label="Download GeoIP">
        <label>
          URL for this download only (optional; .mmdb, .mmdb.gz or .tar.gz){" "}
          <input type="url" name="url" aria-describedby="geoip-url-hint" />
        </label>{" "}
        {/* The API refuses a plain-http URL in a request unless it is geoip.url itself. */}
        <small id="geoip-url-hint" class="muted">
          Must be https. An http mirror is taken only as the geoip.url setting: set it there and
          leave this field empty.
        </small>{" "}
        <button type="submit">Download now</button>{" "}
        <span class="muted">Progress shows on the next page, live.</span>
      </ApiForm>
    </div>
  );
}

export default async function settings(ctx: PageContext) {
  const [rows, me, geoRes] = await Promise.all([
    loadList(ctx.api, "/api/settings"),
    ctx.api.get("/api/auth/me"),
    ctx.api.call<Obj>("GET", "/api/geoip"),
  ]);
  const geo = geoRes.ok ? geoRes.body : null;
  return {
    title: "Settings",
    body: (
      <section>
        <h1>Settings</h1>
        <div class="card">
          <h2>Your sign-in</h2>
          <Island
            name="TotpSetup"
            id="totp"
            props={{
              enabled: bool(me, "totpEnabled"),
              recoveryLeft: num(me, "recoveryCodesLeft") ?? 0,
            }}
          />
          <ApiForm
            csrf={ctx.csrf}
            api="/api/auth/logout-all"
            back="/login"
            label="Sign out everywhere"
          >
            <button type="submit" class="secondary">Sign out everywhere</button>{" "}
            <span class="muted">Ends every session of this admin, this one included.</span>
          </ApiForm>
        </div>
        <h2>GeoIP</h2>
        <GeoipCard geo={geo} csrf={ctx.csrf} />
        <h2>Controller settings</h2>
        <Table
          caption={`${rows.length} setting(s)`}
          rows={rows}
          columns={[
            { label: "Setting", cell: (s) => <code>{str(s, "key")}</code> },
            {
              label: "Value",
              cell: (s) => {
                const v = field(s, "value");
                const key = str(s, "key");
                return (
                  <ApiForm
                    csrf={ctx.csrf}
                    api="/api/settings"
                    method="PATCH"
                    back="/settings"
                    class="inline"
                    label={`Setting ${key}`}
                    bools={typeof v === "boolean" ? ["value"] : undefined}
                    nums={typeof v === "number" ? ["value", "version"] : ["version"]}
                  >
                    <input type="hidden" name="key" value={key} />
                    <input type="hidden" name="version" value={str(s, "version")} />
                    {key === "geoip.url"
                      ? (
                        // Never rendered back: it may carry a licence key.
                        <input
                          type="url"
                          name="value"
                          placeholder={str(geo, "url", "(set)")}
                          required
                          aria-label={key}
                        />
                      )
                      : typeof v === "boolean"
                      ? (
                        <select name="value" aria-label={key}>
                          <option value="true" selected={v}>on</option>
                          <option value="false" selected={!v}>off</option>
                        </select>
                      )
                      : (
                        <input
                          type={typeof v === "number" ? "number" : "text"}
                          name="value"
                          value={String(v ?? "")}
                          aria-label={key}
                        />
                      )} <button type="submit" class="secondary">Save</button>
                  </ApiForm>
                );
              },
            },
            { label: "Version", cell: (s) => str(s, "version") },
            { label: "Changed", cell: (s) => when(field(s, "updatedAt")) },
          ]}
        />
      </section>
    ),
  };
}
