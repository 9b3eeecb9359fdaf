package fsstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/idvault/idvault/vault/store"
)

const (
	childDirEnv = "FSSTORE_TEST_CHILD_DIR"
	childIDEnv  = "FSSTORE_TEST_CHILD_ID"
	childKeys   = 40
)

// TestCrossProcessIfAbsent re-executes the test binary as 8 processes that
// race IfAbsent Puts on the same keys of one directory, as vault instances
// on one machine redeem the same token: for each key exactly one wins.
func TestCrossProcessIfAbsent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 8 processes")
	}
	const children = 8
	dir := t.TempDir()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *strings.Builder
	}
	var cs []child
	for i := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrossProcessChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childDirEnv+"="+dir, fmt.Sprintf("%s=%d", childIDEnv, i))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := new(strings.Builder)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, child{cmd, stdin, out})
	}
	// Start them together: each child blocks on stdin until it closes.
	for _, c := range cs {
		c.stdin.Close()
	}
	winners := make(map[int]int) // key -> child
	for i, c := range cs {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, c.out)
		}
		results := 0
		sc := bufio.NewScanner(strings.NewReader(c.out.String()))
		for sc.Scan() {
			var key int
			var result string
			if _, err := fmt.Sscanf(sc.Text(), "RESULT %d %s", &key, &result); err != nil {
				continue
			}
			results++
			switch result {
			case "won":
				if w, ok := winners[key]; ok {
					t.Errorf("key %d: children %d and %d both won", key, w, i)
				}
				winners[key] = i
			case "exists":
			default:
				t.Errorf("child %d, key %d: %s", i, key, result)
			}
		}
		if results != childKeys {
			t.Fatalf("child %d reported %d results, want %d:\n%s", i, results, childKeys, c.out)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for key := range childKeys {
		w, ok := winners[key]
		if !ok {
			t.Fatalf("key %d: no child won", key)
		}
		mustRead(t, s, fmt.Sprintf("redeemed/%02d", key), fmt.Sprintf("child %d", w))
	}
}

// TestCrossProcessChild is the child of TestCrossProcessIfAbsent.
func TestCrossProcessChild(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("runs only as a child of TestCrossProcessIfAbsent")
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, os.Stdin) // the start signal: stdin closes
	body := "child " + os.Getenv(childIDEnv)
	for key := range childKeys {
		err := put(t, s, fmt.Sprintf("redeemed/%02d", key), body, store.PutOptions{IfAbsent: true})
		switch {
		case err == nil:
			fmt.Printf("RESULT %d won\n", key)
		case errors.Is(err, store.ErrExists):
			fmt.Printf("RESULT %d exists\n", key)
		default:
			fmt.Printf("RESULT %d error:%q\n", key, err.Error())
		}
	}
}
