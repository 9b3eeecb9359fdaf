package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK     = 0 // success
	exitFailed = 1 // verification failed: the log was tampered with (or is absent)
	exitUsage  = 2 // bad usage, or an I/O error that kept the command from finishing
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// cli is what a command runs with: its output streams, the environment and
// the time relative arguments are measured from.
type cli struct {
	stdout, stderr io.Writer
	env            func(string) string
	now            time.Time
	cmd            *command // the command being run
	args           []string // its positional arguments

	deploy  *deployment        // the deployment file read, if any
	origins map[string]origin  // where each filled flag's value came from
	s3creds s3CredentialSource // where S3 credentials come from
}

// command is one leaf command of the tree.
type command struct {
	path    string // e.g. "audit verify"
	summary string // one line for the command list
	usage   string // the synopsis after "idvault "
	help    string // what it does, with an example
	flags   func(fs *flag.FlagSet) func(ctx context.Context, c *cli) int
	// args is how many positional arguments the command takes at most
	// (they reach it in cli.args).
	args int
	// positionalStore: the positional argument, when given, is the store
	// (init), so the deployment does not fill --store.
	positionalStore bool
	// noDeployment: the command reads no deployment file (version).
	noDeployment bool
	// writesDeployment: the command creates the deployment file (init), so
	// a --config or $IDVAULT_CONFIG that does not exist yet is no error.
	writesDeployment bool
}

// commands lists the leaf commands; groups ("audit") are derived from them.
var commands = []*command{initCommand, verifyCommand, checkpointCommand, stateKeyCommand, queryCommand, statsCommand, sweepCommand, tokenRotateCommand,
	kekCommand, kekCreateCommand, kekRewrapCommand, versionCommand}

// groupHelp describes the command groups.
var groupHelp = map[string]string{
	"audit": `Work with the vault's tamper-evident audit log: check that nobody edited,
deleted or rolled it back (verify), hand its signed heads to a witness
outside the store (checkpoint), ask who touched what and when (query), and
count accesses per principal per hour (stats).

Example:
  idvault audit verify --store /var/lib/idvault --verifier-key-file audit.pub --state verify.state
`,
	"token": `Manage the key that seals single-use access tokens (rotate).

Example:
  idvault token rotate --as ops-1 --reason "quarterly" --store /var/lib/idvault --kek local:/etc/idvault/kek
`,
}

// run is the whole CLI: args are the arguments after the program name.
// It returns the process exit code: 0 success, 1 verification failure,
// 2 usage or I/O error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env func(string) string) int {
	c := &cli{stdout: stdout, stderr: stderr, env: env, now: time.Now()}
	if len(args) == 0 {
		topUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return c.helpFor(args[1:])
	}
	// Find the longest command path that prefixes args.
	var words []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		words = append(words, a)
	}
	for n := len(words); n > 0; n-- {
		p := strings.Join(words[:n], " ")
		if cmd := findCommand(p); cmd != nil {
			return c.runCommand(ctx, cmd, args[n:])
		}
		if _, ok := groupHelp[p]; ok {
			rest := args[n:]
			if len(rest) > 0 && isHelpArg(rest[0]) {
				groupUsage(stdout, p)
				return exitOK
			}
			if len(rest) > 0 {
				fmt.Fprintf(stderr, "idvault: unknown command %q\n\n", clip(p+" "+rest[0]))
			}
			groupUsage(stderr, p)
			return exitUsage
		}
	}
	fmt.Fprintf(stderr, "idvault: unknown command %q\n\n", clip(args[0]))
	topUsage(stderr)
	return exitUsage
}

func isHelpArg(a string) bool {
	switch a {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

func findCommand(path string) *command {
	for _, cmd := range commands {
		if cmd.path == path {
			return cmd
		}
	}
	return nil
}

// helpFor answers "idvault help [command...]".
func (c *cli) helpFor(words []string) int {
	if len(words) == 0 {
		topUsage(c.stdout)
		return exitOK
	}
	p := strings.Join(words, " ")
	if cmd := findCommand(p); cmd != nil {
		printHelp(c.stdout, cmd)
		return exitOK
	}
	if _, ok := groupHelp[p]; ok {
		groupUsage(c.stdout, p)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "idvault help: unknown command %q\n\n", clip(p))
	topUsage(c.stderr)
	return exitUsage
}

func topUsage(w io.Writer) {
	fmt.Fprint(w, `idvault: operate an idvault store (encrypted identity documents, single-use
access tokens, a tamper-evident audit log).

Usage:
  idvault <command> [flags]

Commands:
`)
	listCommands(w, "")
	fmt.Fprint(w, `
Every command but version reads the deployment file that "idvault init" writes
(--config FILE, else $IDVAULT_CONFIG, else ~/.config/idvault/idvault.conf):
the data store, the key store, the KEK, where its passphrase comes from, the
actor, the pinned verifier key, verify's state file and the witness file.
A flag overrides its IDVAULT_* variable, which overrides the file.

The store (--store URL, $IDVAULT_STORE, store in the file) is a directory
(file:///abs/path or a plain path) or s3://bucket?endpoint=host:port&tls=false&prefix=p&region=r
with credentials from MINIO_ROOT_USER/MINIO_ROOT_PASSWORD, MINIO_ACCESS_KEY/
MINIO_SECRET_KEY or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN),
else ~/.aws/credentials (AWS_PROFILE), ~/.mc/config.json, a web identity
(AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN) or the instance's IAM role; or from
the AWS credentials file --s3-credentials file:PATH names.

Run "idvault help <command>" or "idvault <command> -h" for details.
Exit status: 0 success, 1 verification failed, 2 usage or I/O error.
`)
}

func groupUsage(w io.Writer, group string) {
	fmt.Fprintf(w, "Usage: idvault %s <command> [flags]\n\n%s\nCommands:\n", group, groupHelp[group])
	listCommands(w, group+" ")
	fmt.Fprintf(w, "\nRun \"idvault %s <command> -h\" for details.\n", group)
}

func listCommands(w io.Writer, prefix string) {
	for _, cmd := range commands {
		if strings.HasPrefix(cmd.path, prefix) {
			fmt.Fprintf(w, "  %-17s %s\n", cmd.path, cmd.summary)
		}
	}
}

// newFlagSet returns cmd's flag set and the function that runs it once
// parsed.
func newFlagSet(cmd *command) (*flag.FlagSet, func(context.Context, *cli) int) {
	fs := flag.NewFlagSet("idvault "+cmd.path, flag.ContinueOnError)
	fs.Usage = func() {} // run prints help itself, to stdout for -h
	run := cmd.flags(fs)
	if !cmd.noDeployment {
		fs.String("config", "", "the deployment `FILE` (default $IDVAULT_CONFIG, else ~/.config/idvault/idvault.conf if it exists); flags and IDVAULT_* variables override it")
	}
	return fs, run
}

func printHelp(w io.Writer, cmd *command) {
	fs, _ := newFlagSet(cmd)
	fmt.Fprintf(w, "Usage: idvault %s\n\n%s\nFlags:\n", cmd.usage, cmd.help)
	// Like flag.PrintDefaults, but spelled with "--" as everywhere else in
	// the help.
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		fmt.Fprintf(w, "\n      %s", usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

func (c *cli) runCommand(ctx context.Context, cmd *command, args []string) int {
	c.cmd = cmd
	fs, exec := newFlagSet(cmd)
	fs.SetOutput(c.stderr)
	// Flags may come before and after the positional arguments.
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printHelp(c.stdout, cmd)
				return exitOK
			}
			// flag has printed what was wrong.
			return c.usageError("")
		}
		if fs.NArg() == 0 {
			break
		}
		if len(c.args) == cmd.args {
			return c.usageError(fmt.Sprintf("unexpected argument %q", clip(fs.Arg(0))))
		}
		c.args = append(c.args, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if !cmd.noDeployment {
		if code := c.applyDeployment(fs); code != exitOK {
			return code
		}
	}
	return exec(ctx, c)
}

// usageError reports a usage problem and returns exitUsage.
func (c *cli) usageError(msg string) int {
	cmd := c.cmd
	if msg != "" {
		fmt.Fprintf(c.stderr, "idvault %s: %s\n", cmd.path, msg)
	}
	fmt.Fprintf(c.stderr, "Usage: idvault %s\nRun \"idvault %s -h\" for help.\n", cmd.usage, cmd.path)
	return exitUsage
}

// fail reports an error that kept cmd from finishing and returns exitUsage.
func (c *cli) fail(err error) int {
	fmt.Fprintf(c.stderr, "idvault %s: %v\n", c.cmd.path, err)
	return exitUsage
}

// storeFlag registers --store on fs, and --s3-credentials, which says how
// to reach it.
func storeFlag(fs *flag.FlagSet) *string {
	fs.String("s3-credentials", "", "where S3 credentials come from, a `SOURCE`: chain (MINIO_*/AWS_* variables, ~/.aws, IAM role; the default) or file:PATH (an AWS credentials file) (default $IDVAULT_S3_CREDENTIALS)")
	return fs.String("store", "", "the `URL` of the data store: a directory, file:///abs/path, or s3://bucket?endpoint=host:port&tls=false&prefix=p&region=r (default $IDVAULT_STORE)")
}

// keyStoreFlag registers --key-store on fs.
func keyStoreFlag(fs *flag.FlagSet) *string {
	return fs.String("key-store", "", "the `URL` of the store holding the key records, when not the data store: on S3 the unversioned key bucket (default $IDVAULT_KEY_STORE)")
}

// storeSpecFrom resolves --store (which the deployment and $IDVAULT_STORE
// fill when it is not given).
func (c *cli) storeSpecFrom(flagValue string) (storeSpec, error) {
	raw := flagValue
	if raw == "" {
		raw = c.env("IDVAULT_STORE")
	}
	if raw == "" {
		return storeSpec{}, fmt.Errorf("%w: no store: pass --store, set IDVAULT_STORE or name it in the deployment file (--config)", errStoreURL)
	}
	s, err := parseStoreURL(raw)
	if err != nil {
		return s, c.fromOrigin("store", err)
	}
	s.Creds = c.s3creds
	return s, nil
}

// keyStoreSpec resolves --key-store; ok is false when none is named.
func (c *cli) keyStoreSpec(flagValue string) (s storeSpec, ok bool, err error) {
	if flagValue == "" {
		return storeSpec{}, false, nil
	}
	s, err = parseStoreURL(flagValue)
	if err != nil {
		return s, false, c.fromOrigin("key-store", fmt.Errorf("key store: %w", err))
	}
	s.Creds = c.s3creds
	return s, true, nil
}

// fromOrigin prefixes err with where the flag's value came from, when not
// the command line.
func (c *cli) fromOrigin(flagName string, err error) error {
	if o, ok := c.origins[flagName]; ok && o.kind != "flag" {
		return fmt.Errorf("%s (from %s): %w", flagName, o, err)
	}
	return err
}
