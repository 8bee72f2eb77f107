/** @jsxImportSource preact */
/** The body of an error page: what failed and where to go. */
export function ErrorView({ status, message }: { status: number; message: string }) {
  return (
    <section>
      <h1>Something went wrong</h1>
      <div class="notice error" role="alert">
        <p>
          {message} <span class="muted">(HTTP {status})</span>
        </p>
      </div>
      <p>
        <a href="/">Back to the fleet</a>
      </p>
    </section>
  );
}
