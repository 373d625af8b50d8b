// verify_chains checks X509-SVID chains with Go's crypto/x509, the verifier daprd and every Go
// Dapr client use. Standard library only (no modules, no network), so tests can build it with
// the distribution's Go.
//
// Usage: verify_chains ROOTS_PEM CHAIN_PEM...
//
// ROOTS_PEM holds the trust anchors. Each CHAIN_PEM is a workload_certificate as Sentry returns
// it: the leaf, then the issuer chain. Each chain is verified for client and for server
// authentication at the current time; "FILE: OK URI" is printed for each, and the first failure
// is printed on stderr with exit status 1 (Go's own message, e.g. "x509: certificate signed by
// unknown authority"). Bad usage exits with status 2.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func certificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no CERTIFICATE block", path)
	}
	return certs, nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: verify_chains ROOTS_PEM CHAIN_PEM...")
		os.Exit(2)
	}
	anchors, err := certificates(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	for _, path := range os.Args[2:] {
		chain, err := certificates(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		intermediates := x509.NewCertPool()
		for _, c := range chain[1:] {
			intermediates.AddCert(c)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
			_, err := chain[0].Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: intermediates,
				KeyUsages:     []x509.ExtKeyUsage{usage},
			})
			if err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
				os.Exit(1)
			}
		}
		if len(chain[0].URIs) != 1 {
			fmt.Fprintf(os.Stderr, "%s: want one URI SAN, got %d\n", path, len(chain[0].URIs))
			os.Exit(1)
		}
		fmt.Printf("%s: OK %s\n", path, chain[0].URIs[0])
	}
}
