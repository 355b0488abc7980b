package agentapi

// DebugConsoleParam on the guest kernel command line is the host's consent
// to the agent serving debug shells (StartDebugShell). The host adds it
// only when the operator set debug_console = true, and never takes it from
// a pod's own kernel parameters.
const DebugConsoleParam = "kata_go.debug_console=1"
