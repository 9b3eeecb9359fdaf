// Command modproxy writes a file-based module proxy (GOPROXY=file://DIR)
// serving every published module of this repository at release.Version,
// built from the files git would commit. make tidy uses it to run go mod
// tidy in the nested modules, which require that version before it is
// tagged.
//
//	go run ./internal/release/modproxy DIR
package main

import (
	"fmt"
	"os"

	"github.com/idvault/idvault/internal/release"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: modproxy DIR")
		os.Exit(2)
	}
	root, err := release.Root(".")
	if err == nil {
		_, err = release.BuildProxy(os.Args[1], root, release.Version)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}
