/** The dashboard's URL table: page modules for GET, form handlers for POST. */
import type { PageHandler } from "./context.ts";
import type { PostHandler } from "./post.ts";
import * as auth from "./login.tsx";
import { formAction } from "./form_action.tsx";
import fleet from "./fleet.tsx";
import node from "./node.tsx";
import relays from "./relays.tsx";
import paths from "./paths.tsx";
import users from "./users.tsx";
import devices from "./devices.tsx";
import profiles from "./profiles.tsx";
import profile from "./profile.tsx";
import tickets from "./tickets.tsx";
import sessions from "./sessions.tsx";
import alerts from "./alerts.tsx";
import audit from "./audit.tsx";
import tokens from "./tokens.tsx";
import settings from "./settings.tsx";
import operation from "./operation.tsx";

interface GetRoute {
  pattern: RegExp;
  handler: PageHandler;
  public?: boolean;
}

const GET: GetRoute[] = [
  { pattern: /^\/$/, handler: fleet },
  { pattern: /^\/login$/, handler: auth.loginPage, public: true },
  { pattern: /^\/login\/totp$/, handler: auth.totpPage, public: true },
  { pattern: /^\/setup$/, handler: auth.setupPage, public: true },
  { pattern: /^\/nodes\/(?<id>[A-Za-z0-9_.-]{1,100})$/, handler: node },
  { pattern: /^\/relays$/, handler: relays },
  { pattern: /^\/paths$/, handler: paths },
  { pattern: /^\/users$/, handler: users },
  { pattern: /^\/devices$/, handler: devices },
  { pattern: /^\/profiles$/, handler: profiles },
  { pattern: /^\/profiles\/(?<id>[A-Za-z0-9_.-]{1,100})$/, handler: profile },
  { pattern: /^\/tickets$/, handler: tickets },
  { pattern: /^\/sessions$/, handler: sessions },
  { pattern: /^\/alerts$/, handler: alerts },
  { pattern: /^\/audit$/, handler: audit },
  { pattern: /^\/tokens$/, handler: tokens },
  { pattern: /^\/settings$/, handler: settings },
  { pattern: /^\/operations\/(?<id>[A-Za-z0-9_.-]{1,100})$/, handler: operation },
];

const POST: { pattern: RegExp; handler: PostHandler }[] = [
  { pattern: /^\/login$/, handler: auth.loginPost },
  { pattern: /^\/login\/totp$/, handler: auth.totpPost },
  { pattern: /^\/setup$/, handler: auth.setupPost },
  { pattern: /^\/logout$/, handler: auth.logoutPost },
  { pattern: /^\/_form$/, handler: formAction },
];

export function matchGet(
  path: string,
): { handler: PageHandler; params: Record<string, string>; public: boolean } | null {
  for (const r of GET) {
    const m = r.pattern.exec(path);
    if (m) return { handler: r.handler, params: { ...m.groups }, public: r.public === true };
  }
  return null;
}

export function matchPost(
  path: string,
): { handler: PostHandler; params: Record<string, string> } | null {
  for (const r of POST) {
    const m = r.pattern.exec(path);
    if (m) return { handler: r.handler, params: { ...m.groups } };
  }
  return null;
}
