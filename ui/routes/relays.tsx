/** @jsxImportSource preact */
/** Relays: the controller's reverse tunnels to nodes behind them. */
import { listPage } from "./simple.tsx";

export default listPage("Relays", "/api/relays", {
  intro: "Relays carry the controller's connections to nodes it cannot reach directly.",
});
