package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCommand = &command{
	path:         "version",
	summary:      "print the versions of this binary, the library and Go",
	usage:        "version",
	noDeployment: true,
	help: `Prints the idvault command's version, the idvault library version it was
built with, the Go version and the platform, on one line, and exits 0.
"go install github.com/idvault/idvault/cmd/idvault@vX.Y.Z" records the
version in the binary; a binary built from a checkout reports the release
being prepared with a -dev suffix (and the commit, when the build recorded
it).

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

// fallbackVersion is what a binary built from a checkout (go build, go
// run, a workspace) reports, where the Go toolchain records no module
// version: the release being prepared, marked as a development build.
// "go install github.com/idvault/idvault/cmd/idvault@vX.Y.Z" records the
// real one, which takes precedence; a packager may set this one with
// -ldflags "-X main.fallbackVersion=vX.Y.Z". docs/releasing.md says when to
// change it.
var fallbackVersion = "v0.9.0-dev"

// versionLine is "idvault CMD (library LIB) GO OS/ARCH": CMD is the
// command module's version as go install recorded it, else
// fallbackVersion with the VCS revision when the build recorded one.
func versionLine() string {
	cmdVersion, libVersion := "", ""
	var rev string
	var dirty bool
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			cmdVersion = v
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/idvault/idvault" && d.Replace == nil && d.Version != "(devel)" {
				libVersion = d.Version
			}
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if cmdVersion == "" {
		cmdVersion = fallbackVersion
		if len(rev) >= 12 {
			cmdVersion += "+" + rev[:12]
			if dirty {
				cmdVersion += ".dirty"
			}
		}
	}
	lib := "library " + libVersion
	if libVersion == "" {
		lib = "library from the same checkout" // a workspace or a replace
	}
	return fmt.Sprintf("idvault %s (%s) %s %s/%s", cmdVersion, lib, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
