// Command idvault is the operator's and security team's tool for an idvault
// store: it prepares an S3 deployment (init), verifies the tamper-evident
// audit log, queries it and counts accesses, sweeps expired documents and
// rotates the token key.
//
// Usage:
//
//	idvault audit verify [--store URL] [--verifier-key KEY | --verifier-key-file FILE] [--state FILE] [--require-sealed]
//	idvault audit query  [--store URL] [filters] [--format FORMAT] [--limit N]
//	idvault audit stats  [--store URL] [filters] [--format FORMAT]
//	idvault sweep        --as PRINCIPAL [--store URL] --kek-file FILE [--passphrase-file FILE]
//	idvault token rotate --as PRINCIPAL [--reason TEXT] [--store URL] --kek-file FILE [--passphrase-file FILE]
//	idvault init         [--store] URL --key-bucket BUCKET --kek-file FILE [--passphrase-file FILE] [--create-kek] [--max-retention DURATION]
//	idvault version
//	idvault help [command]
//
// Filters: --since TIME, --until TIME (RFC 3339, a date, or a signed duration
// from now such as -24h or -7d), --principal PRINCIPAL, --object ID,
// --event EVENT, --outcome OUTCOME, --log LOG. FORMAT is json or table.
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
// internal consistency. With --state FILE it remembers the latest verified
// tree of each log and catches a log rolled back as a whole next time.
//
// audit query writes JSON lines by default (stable field names, times in
// RFC 3339 with nanoseconds, UTC) and aligned columns with --format table.
// audit stats counts, per principal and hour, grants, redemptions, refusals
// and distinct documents, with a total row. Neither checks signatures: run
// verify first.
//
// Run "idvault help <command>" for the details of each command.
package main
