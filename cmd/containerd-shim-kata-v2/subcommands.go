package main

// subcommands are the operator's verbs; none may be a word containerd
// passes to a shim (start, delete) or begin with '-'.
var subcommands = map[string]func(args []string) int{
	"check":    runCheck,
	"env":      runEnv,
	"monitor":  runMonitor,
	"exec":     runExec,
	"template": runTemplate,
}
