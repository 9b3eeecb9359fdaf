package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCommand = &command{
	path:    "version",
	summary: "print the versions of this binary, the library and Go",
	usage:   "version",
	help: `Prints the idvault command's module version, the idvault library version it
was built with, the Go version and the platform, on one line. A binary built
from a checkout says (devel); "go install ...@vX.Y.Z" records the version.

Example:
  idvault version
`,
	flags: func(fs *flag.FlagSet) func(context.Context, *cli) int {
		return func(_ context.Context, c *cli) int {
			fmt.Fprintln(c.stdout, versionLine())
			return exitOK
		}
	},
}

// versionLine is "idvault CMD (library LIB) GO OS/ARCH".
func versionLine() string {
	cmdVersion, libVersion := "(unknown)", "(unknown)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		cmdVersion = bi.Main.Version
		for _, d := range bi.Deps {
			if d.Path == "github.com/idvault/idvault" {
				libVersion = d.Version
				if d.Replace != nil {
					libVersion = "(devel)" // a workspace or replace: built from a checkout
				}
			}
		}
		if cmdVersion == "" {
			cmdVersion = "(devel)"
		}
	}
	return fmt.Sprintf("idvault %s (library %s) %s %s/%s", cmdVersion, libVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
