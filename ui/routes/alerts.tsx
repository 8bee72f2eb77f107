/** @jsxImportSource preact */
/** Alerts raised by the anomaly rules and by fleet health. */
import { listPage } from "./simple.tsx";

export default listPage("Alerts", "/api/alerts", {
  intro: "Newest first. Severity is written out, not only coloured.",
});
