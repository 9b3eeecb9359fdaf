module github.com/idvault/idvault/kms/pkcs11

go 1.26.0

require github.com/idvault/idvault v0.9.0

require (
	github.com/miekg/pkcs11 v1.1.2
	github.com/tink-crypto/tink-go/v2 v2.9.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
