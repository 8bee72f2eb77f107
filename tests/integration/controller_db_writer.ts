/**
 * Child process of controller_db_concurrency_test.ts: writes users through
 * the service layer as fast as it can and prints each one's id on its own
 * line once the transaction has committed. Usage: DB PREFIX MAX
 */
import { openDatabase } from "../../controller/db/sqlite.ts";
import { Service } from "../../controller/service/service.ts";
import { Users } from "../../controller/service/users.ts";

const [path, prefix, max] = Deno.args;
const users = new Users(new Service(openDatabase(path)));
const enc = new TextEncoder();
for (let i = 0; i < Number(max); i++) {
  const u = users.add("system:test-writer", { email: `${prefix}-${i}@example.com` });
  Deno.stdout.writeSync(enc.encode(`${u.id}\n`));
}
