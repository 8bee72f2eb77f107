/** The agent's version, reported in GetStatus.agent_version. */
export const AGENT_VERSION = "pharos-agent 0.1.0";
