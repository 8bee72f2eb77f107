/** @jsxImportSource preact */
/** Live VPN sessions. */
import { listPage } from "./simple.tsx";

export default listPage("Sessions", "/api/sessions", {
  intro: "Devices connected now, with their node and traffic.",
});
