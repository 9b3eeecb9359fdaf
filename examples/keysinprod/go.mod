module github.com/idvault/idvault/examples/keysinprod

go 1.26.0

require (
	github.com/idvault/idvault v0.0.0-00010101000000-000000000000
	github.com/idvault/idvault/kms/awskms v0.0.0-00010101000000-000000000000
	github.com/idvault/idvault/kms/pkcs11 v0.0.0-00010101000000-000000000000
)

require (
	github.com/aws/aws-sdk-go v1.55.8 // indirect
	github.com/jmespath/go-jmespath v0.4.0 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	github.com/tink-crypto/tink-go-awskms/v2 v2.1.0 // indirect
	github.com/tink-crypto/tink-go/v2 v2.9.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/idvault/idvault => ../..
	github.com/idvault/idvault/kms/awskms => ../../kms/awskms
	github.com/idvault/idvault/kms/pkcs11 => ../../kms/pkcs11
)
