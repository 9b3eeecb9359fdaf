// Package envelope is idvault's on-storage format: the key record that holds
// an object's wrapped data key and metadata, and the streaming payload that
// holds the encrypted image.
//
// # Key record (keys/<id>)
//
// The record's clear header carries only what a reader needs before it can
// unwrap anything:
//
//	magic "IDVK" (4) || version (1) || len(kekID) (1) || kekID || len(blob) (u16 BE) || blob
//
// blob is KEK.Encrypt(plaintext, ad) with
//
//	ad        = "idvault key record" || version (1) || vaultID (16) || objectID (16) || len(kekID) (1) || kekID
//	plaintext = dataKey (32) || commit (32) || metadata (fixed 284 bytes, see appendMetadata)
//
// so the metadata (including the canary flag and the subject HMAC) is both
// secret and authenticated, and the wrapped key is bound to its vault, object
// and KEK. The metadata encoding has a fixed length: every record made by one
// KEK has the same size, whatever its metadata, so a canary cannot be told
// from a real document by its record.
//
// # Payload (blobs/<id>)
//
//	magic "IDVP" (4) || version (1) || commit (32) || Tink streaming AEAD ciphertext
//
// The ciphertext is Tink's AES-GCM-HKDF streaming format (HKDF-SHA256, 32-byte
// derived keys, segmentSize-byte ciphertext segments, the 37-byte idvault
// header counted as Tink's first-segment offset) under the raw data key, with
// associated data "idvault payload" || version || vaultID || objectID.
//
// # Key commitment
//
// commit = HMAC-SHA256(dataKey, "idvault/v1 key commitment"). Open checks the
// record's copy against the unwrapped key, and Decrypt checks the payload's
// copy, both in constant time. AES-GCM is not key-committing; the commitment
// makes it so: a payload opens under one data key only.
//
// # Streaming and partial plaintext
//
// A streaming AEAD authenticates segment by segment. Decrypt releases a
// segment's plaintext only after that segment has authenticated, and the last
// segment is marked in its nonce, so truncation and extension are detected.
// But a payload edited in segment n yields the plaintext of segments 0..n-1
// before Read fails with ErrTampered. Callers that must not act on a partial
// object (the vault's Redeem) treat any Read error as "discard everything".
// After an error every further Read returns the same error.
//
// Everything in this package is safe for concurrent use, except that
// Key.Destroy must not run concurrently with other uses of the same Key.
package envelope
