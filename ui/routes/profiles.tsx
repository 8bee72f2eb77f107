/** @jsxImportSource preact */
/**
 * Profiles: one per user; pick a user to see its revision and reseal it,
 * or reseal every user's at once (a long operation shown live).
 */
import { listPage } from "./simple.tsx";
import { str } from "../lib/fields.ts";
import { ApiForm } from "../components/forms.tsx";

export default listPage("Profiles", "/api/users", {
  intro: "Each user's sealed connection profile. Open one to see its revision or reseal it.",
  omit: ["has_password", "created_at", "updated_at", "version"],
  extra: () => [{
    label: "Profile",
    cell: (u) => (
      <a href={`/profiles/${encodeURIComponent(str(u, "id"))}`}>
        profile of {str(u, "email")}
      </a>
    ),
  }],
  after: (ctx) => (
    <ApiForm
      csrf={ctx.csrf}
      api="/api/profiles/reseal"
      back="/profiles"
      class="card"
      label="Reseal all profiles"
    >
      <p>
        <button type="submit">Reseal all profiles</button>{" "}
        <span class="muted">
          Builds and seals every device's profile again (each gets a new revision); the next page
          shows the progress live.
        </span>
      </p>
    </ApiForm>
  ),
});
