/** @jsxImportSource preact */
/**
 * The page frame every signed-in page shares: navigation, who is signed
 * in, the live-feed indicator, the CSRF token for islands, and the one
 * script (same-origin, no inline code).
 */
import type { ComponentChildren } from "preact";
import { CsrfField } from "./forms.tsx";

export const NAV: [string, string][] = [
  ["/", "Fleet"],
  ["/relays", "Relays"],
  ["/paths", "Paths"],
  ["/users", "Users"],
  ["/devices", "Devices"],
  ["/profiles", "Profiles"],
  ["/tickets", "Tickets"],
  ["/sessions", "Sessions"],
  ["/alerts", "Alerts"],
  ["/audit", "Audit"],
  ["/tokens", "API tokens"],
  ["/settings", "Settings"],
];

export interface LayoutProps {
  title: string;
  path: string;
  csrf: string;
  /** Asset version (build hash) for cache busting. */
  assets: string;
  user?: string;
  children?: ComponentChildren;
}

function current(path: string, href: string): boolean {
  return href === "/" ? path === "/" || path.startsWith("/nodes") : path.startsWith(href);
}

export function Layout(p: LayoutProps) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${p.title} · PharosVPN`}</title>
        <link rel="stylesheet" href={`/static/app.css?v=${p.assets}`} />
        <meta name="csrf-token" content={p.csrf} />
        <script type="module" src={`/static/build/islands.js?v=${p.assets}`} />
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
          <a class="brand" href="/">PharosVPN</a>
          {p.user !== undefined && (
            <nav aria-label="Main">
              <ul>
                {NAV.map(([href, label]) => (
                  <li key={href}>
                    <a href={href} aria-current={current(p.path, href) ? "page" : undefined}>
                      {label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          )}
          {p.user !== undefined && (
            <div class="who">
              <span id="live" class="live" role="status" aria-live="polite">
                live updates off
              </span>
              <span>
                Signed in as <b>{p.user}</b>
              </span>
              <form method="post" action="/logout" class="inline">
                <CsrfField token={p.csrf} />
                <button type="submit" class="link">Sign out</button>
              </form>
            </div>
          )}
        </header>
        <main id="main" tabindex={-1}>{p.children}</main>
      </body>
    </html>
  );
}
