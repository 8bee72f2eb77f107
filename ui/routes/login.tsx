/** @jsxImportSource preact */
/**
 * Sign-in (password, then a TOTP or recovery code when the admin enrolled
 * one), first-admin setup from the one-time link, and sign-out. Plain
 * forms: they work without JavaScript.
 */
import { apiError } from "../lib/api.ts";
import { safeBack } from "../lib/security.ts";
import { bool, str } from "../lib/fields.ts";
import { CsrfField } from "../components/forms.tsx";
import { Notice } from "../components/bits.tsx";
import { type Page, type PageContext, redirect } from "./context.ts";
import type { PostContext } from "./post.ts";

function loginForm(csrf: string, next: string, error?: string, email = ""): Page {
  return {
    title: "Sign in",
    status: error ? 401 : 200,
    body: (
      <section class="card">
        <h1>Sign in</h1>
        {error && <Notice kind="error">{error}</Notice>}
        <form method="post" action="/login" aria-label="Sign in">
          <CsrfField token={csrf} />
          <input type="hidden" name="next" value={next} />
          <label>
            E-mail <input type="text" name="email" autocomplete="username" required value={email} />
          </label>
          <label>
            Password{" "}
            <input type="password" name="password" autocomplete="current-password" required />
          </label>
          <button type="submit">Sign in</button>
        </form>
      </section>
    ),
  };
}

function totpForm(csrf: string, next: string, error?: string): Page {
  return {
    title: "Two-factor code",
    status: error ? 401 : 200,
    body: (
      <section class="card">
        <h1>Two-factor code</h1>
        {error && <Notice kind="error">{error}</Notice>}
        <form method="post" action="/login/totp" aria-label="Two-factor code">
          <CsrfField token={csrf} />
          <input type="hidden" name="next" value={next} />
          <label>
            Code from your authenticator app, or a recovery code{" "}
            <input
              type="text"
              name="code"
              inputmode="numeric"
              autocomplete="one-time-code"
              required
            />
          </label>
          <button type="submit">Continue</button>
        </form>
      </section>
    ),
  };
}

function setupForm(csrf: string, token: string, error?: string): Page {
  return {
    title: "Create the first admin",
    status: error ? 400 : 200,
    body: (
      <section class="card">
        <h1>Create the first admin</h1>
        <p class="muted">This one-time link was printed by the controller's first start.</p>
        {error && <Notice kind="error">{error}</Notice>}
        <form method="post" action="/setup" aria-label="Create the first admin">
          <CsrfField token={csrf} />
          <label>
            Setup token <input type="text" name="token" required value={token} />
          </label>
          <label>
            E-mail <input type="text" name="email" autocomplete="username" required />
          </label>
          <label>
            Password (12 characters or more){" "}
            <input type="password" name="password" autocomplete="new-password" required />
          </label>
          <button type="submit">Create admin</button>
        </form>
      </section>
    ),
  };
}

export async function loginPage(ctx: PageContext): Promise<Page | Response> {
  const me = await ctx.api.call("GET", "/api/auth/me");
  const next = safeBack(ctx.url.searchParams.get("next"));
  if (me.ok) return redirect(next);
  return loginForm(ctx.csrf, next);
}

export function totpPage(ctx: PageContext): Promise<Page> {
  return Promise.resolve(totpForm(ctx.csrf, safeBack(ctx.url.searchParams.get("next"))));
}

export function setupPage(ctx: PageContext): Promise<Page> {
  return Promise.resolve(setupForm(ctx.csrf, ctx.url.searchParams.get("token") ?? ""));
}

export async function loginPost({ api, form }: PostContext): Promise<Page | Response> {
  const next = safeBack(form.next);
  const r = await api.call(
    "POST",
    "/api/auth/login",
    { email: form.email ?? "", password: form.password ?? "" },
    form._csrf,
  );
  const csrf = await freshCsrf(api, form._csrf);
  if (!r.ok) {
    return loginForm(csrf, next, apiError(r.body)?.message ?? "sign-in failed", form.email);
  }
  if (bool(r.body, "totpRequired")) return totpForm(csrf, next);
  return redirect(next);
}

export async function totpPost({ api, form }: PostContext): Promise<Page | Response> {
  const next = safeBack(form.next);
  const r = await api.call("POST", "/api/auth/totp", { code: form.code ?? "" }, form._csrf);
  if (r.ok) return redirect(next);
  if (r.status === 401 && apiError(r.body)?.code === "unauthenticated") return redirect("/login");
  return totpForm(
    await freshCsrf(api, form._csrf),
    next,
    apiError(r.body)?.message ?? "wrong code",
  );
}

export async function setupPost({ api, form }: PostContext): Promise<Page | Response> {
  const r = await api.call(
    "POST",
    "/api/auth/setup",
    { token: form.token ?? "", email: form.email ?? "", password: form.password ?? "" },
    form._csrf,
  );
  if (r.ok) return redirect("/login");
  return setupForm(form._csrf ?? "", form.token ?? "", apiError(r.body)?.message ?? "setup failed");
}

export async function logoutPost({ api, form }: PostContext): Promise<Response> {
  await api.call("POST", "/api/auth/logout", {}, form._csrf);
  return redirect("/login");
}

/** The CSRF token after a sign-in step (the API may bind it to the new session). */
async function freshCsrf(api: PostContext["api"], old: string | undefined): Promise<string> {
  const r = await api.call("GET", "/api/csrf");
  return r.ok ? str(r.body, "token") : old ?? "";
}
