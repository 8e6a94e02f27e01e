#!/bin/sh
# Regenerates the keys rcgen cannot make with the ring backend (RSA, ECDSA P-521, Ed448), each as one PEM
# file holding a self-signed leaf certificate (valid for 100 years, basicConstraints CA:FALSE)
# followed by its PKCS#8 private key. Run from this directory: `sh regenerate.sh`.
# The tests pin no thumbprint, so regenerating needs no test change.
set -eu

make() { # make NAME DNS-NAME KEY-ALGORITHM-OPTIONS...
    name=$1 dns=$2
    shift 2
    openssl req -x509 -new -nodes -days 36500 -subj "/CN=$dns" \
        -addext "subjectAltName=DNS:$dns" -addext "basicConstraints=critical,CA:FALSE" \
        "$@" -keyout key.tmp -out cert.tmp 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in key.tmp -out key8.tmp
    cat cert.tmp key8.tmp > "$name.pem"
    rm -f key.tmp key8.tmp cert.tmp
}

make rsa1024 rsa1024.test -newkey rsa:1024
make rsa2048 rsa2048.test -newkey rsa:2048
make p521 p521.test -newkey ec -pkeyopt ec_paramgen_curve:P-521
make ed448 ed448.test -newkey ed448
