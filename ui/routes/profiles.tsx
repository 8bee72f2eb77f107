/** @jsxImportSource preact */
/** Profiles: one per user; pick a user to see its revision and reseal it. */
import { listPage } from "./simple.tsx";
import { str } from "../lib/fields.ts";

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
});
