/** @jsxImportSource preact */
/** Users (VPN users and admins) and a form to add one. */
import { listPage } from "./simple.tsx";
import { ApiForm } from "../components/forms.tsx";
import { str } from "../lib/fields.ts";

export default listPage("Users", "/api/users", {
  omit: ["has_password"],
  extra: () => [{
    label: "Profile",
    cell: (u) => <a href={`/profiles/${encodeURIComponent(str(u, "id"))}`}>profile</a>,
  }],
  after: (ctx) => (
    <>
      <h2>Add a user</h2>
      <ApiForm csrf={ctx.csrf} api="/api/users" back="/users" class="card" label="Add a user">
        <label>
          E-mail <input type="text" name="email" required />
        </label>
        <label>
          Role{" "}
          <select name="role">
            <option value="user">user</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <button type="submit">Add user</button>
      </ApiForm>
    </>
  ),
});
