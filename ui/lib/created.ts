/** Reading the answers of "create ticket" and "create token" (one-time secrets). */
import { field, str } from "./fields.ts";

export function ticketView(body: unknown): { id: string; link: string } {
  const t = field(body, "ticket") ?? body;
  const link = str(body, "deepLink") || str(t, "deepLink") || str(body, "link") ||
    str(t, "link") || str(body, "url") || str(t, "url");
  return { id: str(t, "id"), link };
}

export function tokenSecret(body: unknown): string {
  const t = field(body, "token");
  if (typeof t === "string") return t;
  return str(body, "secret") || str(t, "secret") || str(t, "token");
}
