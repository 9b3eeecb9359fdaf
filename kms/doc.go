// Package kms provides key-encryption keys (KEKs): the keys, held outside the
// storage, that wrap each object's data key. A vault never sees a KEK's key
// material, only the [KEK] interface: Encrypt, Decrypt, ID.
//
// # By URI
//
// [Open] returns the KEK a URI names: "local:PATH" for a keyset file (the
// passphrase from a [PassphraseSource]: a file, an environment variable, a
// prompt), and any other scheme through the [Opener]s the caller passes:
// the nested modules github.com/idvault/idvault/kms/awskms ("aws-kms://…")
// and github.com/idvault/idvault/kms/pkcs11 ("pkcs11:…", RFC 7512, cgo),
// or [FromTinkClient] of any Tink KMS client. Nothing registers itself on
// import. To move a vault from one KEK to another, see vault.Rewrap.
//
// Two kinds of KEK are provided in this package.
//
// # A cloud or Vault KMS, through Tink
//
// Tink's KMS clients (AWS KMS, GCP Cloud KMS, HashiCorp Vault) live in
// separate modules, so a program downloads only the one it uses. Each client
// returns a [tink.AEAD] for a key URI; [FromAEAD] turns that into a KEK:
//
//	import "github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
//
//	const keyURI = "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
//	client, err := gcpkms.NewClientWithOptions(ctx, keyURI)
//	if err != nil { … }
//	remote, err := client.GetAEAD(keyURI)
//	if err != nil { … }
//	kek := kms.FromAEAD(keyURI, remote) // every wrap and unwrap is one KMS call
//
// The AWS (github.com/tink-crypto/tink-go-awskms/v2, "aws-kms://arn:…") and
// HashiCorp Vault (github.com/tink-crypto/tink-go-hcvault/v2, "hcvault://…")
// clients work the same way. Rotation is then the KMS's business.
//
// # A local keyset protected by a passphrase
//
// [CreateLocal] makes a file holding a Tink AES-256-GCM keyset, encrypted
// under a key derived from a passphrase with argon2id; [OpenLocal] opens it.
// This is the embedded default for one machine. The file is versioned and
// self-describing (magic, version, KDF name and parameters, salt, random
// keyset ID, encrypted keyset); the header is the associated data of the
// encrypted keyset, so editing it (say, to weaken the KDF parameters) makes
// the file fail to open, and the parameters are bounded before any work so a
// planted file cannot exhaust memory. [Local.Rotate] adds a new primary key;
// older ones stay, so everything wrapped before still decrypts. Back the file
// up: losing it, or its passphrase, shreds every object wrapped under it.
//
// # Errors
//
// Decrypt fails with [ErrDecrypt] and nothing more when the ciphertext or
// its associated data do not authenticate, and with an error wrapping
// [ErrUnavailable] when the key could not be asked (transport error,
// timeout, throttling, the context ending; see [IsUnavailable]): an outage
// is never reported as tampering.
// Opening a local keyset fails with [ErrWrongPassphrase] (which covers a
// tampered file: the two cannot be told apart) or [ErrKeysetCorrupt];
// creating one over an existing file fails with [ErrKeysetExists]. No error,
// String or fmt verb of this package prints key material.
package kms
