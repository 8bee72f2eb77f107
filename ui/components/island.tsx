/** @jsxImportSource preact */
/**
 * Renders an island on the server inside a marker element whose
 * attributes name the component and carry its props as JSON (no inline
 * script, so the CSP can forbid them); the browser bundle hydrates it.
 * `id` keeps the island's DOM (and its state) across live refreshes.
 */
import { ISLANDS } from "../islands/registry.ts";

export function Island(
  { name, id, props }: { name: keyof typeof ISLANDS & string; id: string; props: object },
) {
  const C = ISLANDS[name];
  return (
    <div data-island={name} data-key={id} data-props={JSON.stringify(props)}>
      <C {...props} />
    </div>
  );
}
