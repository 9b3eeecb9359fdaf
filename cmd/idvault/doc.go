// Command idvault is the operator's and security team's tool for an idvault
// deployment: it prepares one (init) and writes its deployment file,
// verifies the tamper-evident audit log, queries it and counts accesses,
// sweeps expired documents, rotates the token key, and creates, counts and
// migrates key-encryption keys.
//
// Install it with
//
//	go install github.com/idvault/idvault/cmd/idvault@latest
//
// Usage:
//
//	idvault init             [--store] URL [--key-store URL] --kek URI [--create-kek] [--passphrase SOURCE] [--max-retention DURATION]
//	idvault audit verify     [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--state FILE [--state-key-file FILE] [--init-state]] [--witness FILE] [--format FORMAT]
//	idvault audit checkpoint [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--out FILE]
//	idvault audit state-key  --out FILE
//	idvault audit query      [--store URL] [filters] [--unverified] [--format FORMAT] [--limit N] [--after CURSOR] [--follow]
//	idvault audit stats      [--store URL] [filters] [--unverified] [--format FORMAT]
//	idvault sweep            --as PRINCIPAL [--store URL] [--key-store URL] --kek URI [--passphrase SOURCE]
//	idvault token rotate     --as PRINCIPAL [--reason TEXT] [--revoke] [--store URL] [--key-store URL] --kek URI [--passphrase SOURCE]
//	idvault kek              [--store URL] [--key-store URL]
//	idvault kek create       local:PATH [--passphrase SOURCE]
//	idvault kek rewrap       [--store URL] [--key-store URL] [--from URI] --to URI --as PRINCIPAL [--passphrase SOURCE]
//	idvault version
//	idvault help [command]
//
// Every command but version takes --config FILE and reads the deployment
// file init wrote (--config, else $IDVAULT_CONFIG, else
// ~/.config/idvault/idvault.conf): "key = value" lines naming the store,
// key-store, s3-credentials, kek, passphrase (a source: file:PATH, env:NAME
// or prompt, never the passphrase), actor, verifier-key, state and witness.
// For each, a flag overrides its IDVAULT_* variable (IDVAULT_STORE,
// IDVAULT_KEY_STORE, IDVAULT_S3_CREDENTIALS, IDVAULT_KEK,
// IDVAULT_PASSPHRASE_SOURCE, IDVAULT_ACTOR, IDVAULT_VERIFIER_KEY,
// IDVAULT_STATE, IDVAULT_WITNESS), which overrides the file. The file holds
// no secret and refuses one. docs/cli.md describes every command.
//
// Filters: --since TIME, --until TIME (RFC 3339, a date, or a signed duration
// from now such as -24h or -7d), --principal PRINCIPAL, --object ID,
// --event EVENT, --outcome OUTCOME, --log LOG. FORMAT is json or table (and
// ocsf for query; json or text for verify).
//
// The store is named by --store or $IDVAULT_STORE: a directory (a plain path
// or file:///abs/path) or s3://bucket?endpoint=host:port&tls=false&prefix=p&region=r.
// S3 credentials come from the environment (MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD, MINIO_ACCESS_KEY and MINIO_SECRET_KEY, or
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY with AWS_SESSION_TOKEN, first
// complete pair wins), else from the shared files (~/.aws/credentials with
// AWS_PROFILE, ~/.mc/config.json), a web identity (AWS_WEB_IDENTITY_TOKEN_FILE
// and AWS_ROLE_ARN) or the instance's IAM role; they are never printed. A directory must already exist: a mistyped path must
// not become an empty store that "verifies".
//
// audit verify exits 0 when every log verifies, 1 when any problem is found
// (or there is no audit log at all), 2 on usage or I/O errors. Pin the
// verifier key (the vault's AuditVerifierKey) with --verifier-key or
// --verifier-key-file: the copy the vault publishes in the store proves only
// internal consistency. With --state FILE it pins the key on first use and
// remembers the state chain's head, the latest verified tree of each log
// and which logs were closed, and catches a log rolled back, deleted or
// reopened next time; with --state-key-file (a key made by audit
// state-key, or $IDVAULT_STATE_KEY_FILE) the state file is authenticated;
// with --witness FILE it checks the store against heads printed earlier by
// audit checkpoint (signed notes, for a witness outside the store).
//
// audit query writes JSON lines by default (stable field names, times in
// RFC 3339 with nanoseconds, UTC), aligned columns with --format table and
// OCSF events with --format ocsf, ordered by time; --follow streams new
// records as checkpoints seal them, resumable with --after CURSOR.
// audit stats counts, per principal and hour, grants, redemptions (images
// released), refusals and distinct documents, with a total row. Both show
// only records a valid signed checkpoint covers unless --unverified.
//
// Run "idvault help <command>" for the details of each command.
package main
