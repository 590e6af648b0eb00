#!/usr/bin/env bash
# Generates the project's own SAT-like test credentials (never real SAT files) with OpenSSL 3:
#   crates/crypto/tests/fixtures/<name>/{certificate.cer,private_key.key,password.txt}
# and the CA that issued them (ca.cer, valid 2015-2045), another CA (other_ca.cer), a CA certificate
# not allowed to sign certificates (ca_without_cert_sign.cer) and the issuing CA's name and key in
# a certificate valid only from 2026-01-01 (late_ca.cer: it vouches for csd_future alone, issued
# in 2030; the others were issued before it existed) and a CA valid only from 2010 to 2015
# (expired_ca.cer), for the trusted-issuer tests.
# Layout as SAT's (see shared/sat/FACTS.md): DER X.509 v3 with sha256WithRSA, RFC in
# x500UniqueIdentifier (2.5.4.45) as "RFC / REP-RFC", CURP in serialNumber (2.5.4.5), the serial
# number made of the ASCII codes of a 20-digit NoCertificado; the key as DER PKCS#8
# EncryptedPrivateKeyInfo, PBES2 + PBKDF2 (hmacWithSHA1, 2048 iterations) + des-ede3-cbc.
# CSD: OU present, keyUsage digitalSignature+nonRepudiation. FIEL: C=MX + emailAddress, no OU,
# keyUsage adds dataEncipherment+keyAgreement, extendedKeyUsage emailProtection+clientAuth.
# Usage: scripts/gen-sat-like-fixtures.sh   (rewrites the fixtures; commit the result)
set -euo pipefail
out="$(cd "$(dirname "$0")/.." && pwd)/crates/crypto/tests/fixtures"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
pw=12345678a

mkdir -p ca/newcerts && touch ca/index.txt
cat > ca.cnf <<CNF
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = ./ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
certificate = ./ca.pem
private_key = ./ca.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
preserve = yes
email_in_dn = yes
[ anything ]
commonName = optional
name = optional
organizationName = optional
countryName = optional
emailAddress = optional
x500UniqueIdentifier = optional
serialNumber = optional
organizationalUnitName = optional
[ csd ]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature, nonRepudiation
[ fiel ]
basicConstraints = critical, CA:FALSE
keyUsage = digitalSignature, nonRepudiation, dataEncipherment, keyAgreement
extendedKeyUsage = emailProtection, clientAuth
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ req ]
distinguished_name = dn
string_mask = nombstr
[ dn ]
CNF

# The CA, self-signed with explicit dates (`req -x509` can only start it today): the trusted-issuer
# check wants a CA whose validity covers when each credential was issued.
ca_subject="/CN=AC de Pruebas IncrementaCRM/O=IncrementaCRM Test CA/OU=Solo pruebas"
# self_sign OUT SERIAL START END [KEY SUBJECT]: a CA certificate of KEY (ca.key) under SUBJECT
# (ca_subject), valid from START to END.
self_sign() {
  local cert=$1 serial=$2 start=$3 end=$4 key=${5:-ca.key} subject=${6:-$ca_subject}
  openssl req -new -key "$key" -out "$cert.csr" -subj "$subject" -config ca.cnf 2>/dev/null
  echo "$serial" > ca/serial
  openssl ca -batch -selfsign -keyfile "$key" -config ca.cnf -extensions v3_ca \
    -startdate "$start" -enddate "$end" -in "$cert.csr" -out "$cert" -notext 2>/dev/null
}
openssl genrsa -out ca.key 2048 2>/dev/null
self_sign ca.pem 01 150101000000Z 450101000000Z

# other_cas DIR: writes DIR/other_ca.cer and DIR/ca_without_cert_sign.cer (DER). Runs alone too:
#   bash -c 'source <(sed -n "/^other_cas()/,/^}/p" scripts/gen-sat-like-fixtures.sh); other_cas crates/crypto/tests/fixtures'
other_cas() {
  local dir=$1 tmp
  tmp=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/o.key" -out "$tmp/o.pem" -days 7300 -sha256 \
    -subj "/CN=AC Ajena de Pruebas/O=Otra CA de pruebas" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl x509 -in "$tmp/o.pem" -outform DER -out "$dir/other_ca.cer"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/n.key" -out "$tmp/n.pem" -days 7300 -sha256 \
    -subj "/CN=AC de Pruebas IncrementaCRM/O=IncrementaCRM Test CA/OU=Solo pruebas" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature" 2>/dev/null
  openssl x509 -in "$tmp/n.pem" -outform DER -out "$dir/ca_without_cert_sign.cer"
  rm -rf "$tmp"
}

# serial_of 30001000000500009901 -> hex of the ASCII digits
serial_of() { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }

# issue NAME KIND NOCERT START END SUBJECT [KEYFILE]
issue() {
  local name=$1 kind=$2 nocert=$3 start=$4 end=$5 subject=$6 keyfile=${7:-}
  mkdir -p "$out/$name"
  if [ -z "$keyfile" ]; then
    openssl genrsa -out "$name.pem" 2048 2>/dev/null
    keyfile="$name.pem"
  fi
  openssl req -new -key "$keyfile" -out "$name.csr" -subj "$subject" -config ca.cnf -utf8 2>/dev/null
  echo "$(serial_of "$nocert")" > ca/serial
  openssl ca -batch -config ca.cnf -extensions "$kind" -startdate "$start" -enddate "$end" \
    -in "$name.csr" -out "$name.crt" -notext -utf8 2>/dev/null
  openssl x509 -in "$name.crt" -outform DER -out "$out/$name/certificate.cer"
  openssl pkcs8 -topk8 -inform PEM -in "$keyfile" -outform DER -v2 des3 -v2prf hmacWithSHA1 \
    -iter 2048 -passout "pass:$pw" -out "$out/$name/private_key.key"
  printf '%s' "$pw" > "$out/$name/password.txt"
}

moral_csd="/CN=TACOS CAMPESTRE MX SA DE CV/name=TACOS CAMPESTRE MX SA DE CV/O=TACOS CAMPESTRE MX SA DE CV/x500UniqueIdentifier=TCM970625MB1 \/ LOLA800101AB2/serialNumber= \/ LOLA800101HDFPPN09/OU=Sucursal Centro"
moral_fiel="/CN=TACOS CAMPESTRE MX SA DE CV/name=TACOS CAMPESTRE MX SA DE CV/O=TACOS CAMPESTRE MX SA DE CV/C=MX/emailAddress=fiscal@tacos.example/x500UniqueIdentifier=TCM970625MB1 \/ LOLA800101AB2/serialNumber= \/ LOLA800101HDFPPN09"
person_csd="/CN=MARIA NUNEZ LOPEZ/name=MARIA NUNEZ LOPEZ/O=MARIA NUNEZ LOPEZ/x500UniqueIdentifier=NULM850315QX7/serialNumber=NULM850315MDFXPR02/OU=MARIA NUNEZ LOPEZ"

issue csd_valid      csd  30001000000500009901 250101000000Z 290101000000Z "$moral_csd"
issue fiel_valid     fiel 30001000000500009902 250101000000Z 290101000000Z "$moral_fiel"
issue csd_expired    csd  30001000000500009903 190101000000Z 230101000000Z "$moral_csd"
issue csd_person     csd  30001000000500009904 250101000000Z 290101000000Z "$person_csd"
issue csd_future     csd  30001000000500009905 300101000000Z 340101000000Z "$moral_csd"
# A certificate with the key of another credential.
issue mismatch       csd  30001000000500009906 250101000000Z 290101000000Z "$moral_csd"
cp "$out/fiel_valid/private_key.key" "$out/mismatch/private_key.key"
openssl x509 -in ca.pem -outform DER -out "$out/ca.cer"
self_sign late.pem 02 260101000000Z 460101000000Z
openssl x509 -in late.pem -outform DER -out "$out/late_ca.cer"
# A CA whose validity ended in 2015 (config check and the start-up log say so).
openssl genrsa -out expired.key 2048 2>/dev/null
self_sign expired.pem 03 100101000000Z 150101000000Z expired.key "/CN=AC Vencida de Pruebas/O=Otra CA de pruebas"
openssl x509 -in expired.pem -outform DER -out "$out/expired_ca.cer"
openssl x509 -inform DER -in "$out/csd_valid/certificate.cer" -outform PEM -out "$out/csd_valid/certificate.pem"
# Trusted-issuer files that must not let the fixtures in: a CA that signed none of them, and a
# certificate that says CA:TRUE but whose keyUsage does not allow signing certificates.
other_cas "$out"
echo "fixtures written to $out"
