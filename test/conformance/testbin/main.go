// Command testbin stands in for the programs inside the upstream critest
// images, which cannot be pulled here. What it does depends on the name
// it is run by:
//
//	nnp    prints "Effective uid: N" (installed setuid root, as the
//	       nonewprivs image's program is)
//	nginx  re-executes itself so /proc/self/cmdline reads like nginx's
//	       master, writes /var/run/nginx.pid, serves HTTP on -listen
//	httpd  serves HTTP on -listen and logs a line naming itself
//	pause  sleeps until SIGINT or SIGTERM, reaping orphans meanwhile (it
//	       is PID 1 of a pod that shares its PID namespace)
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// masterTitle is what critest looks for in the web server's cmdline.
const masterTitle = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	switch {
	case name == "pause":
		pause()
	case name == "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case name == "nginx":
		// exec keeps the PID, so the pid file written after it is right.
		self, err := os.Executable()
		if err == nil {
			err = syscall.Exec(self, append([]string{masterTitle}, os.Args[1:]...), os.Environ())
		}
		fail(err)
	case strings.HasPrefix(os.Args[0], "nginx: master"):
		fail(os.WriteFile("/var/run/nginx.pid", []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644))
		serve("nginx")
	default:
		serve(name)
	}
}

func pause() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func serve(name string) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	listen := fs.String("listen", ":80", "address to serve on")
	fail(fs.Parse(os.Args[1:]))
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "<html><body><h1>Welcome to %s</h1></body></html>\n", name)
	})
	fmt.Printf("%s: serving on %s\n", name, *listen)
	fail(http.ListenAndServe(*listen, nil))
}

func fail(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
