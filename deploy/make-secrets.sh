#!/bin/sh
# make-secrets.sh DIR [NAME...]: a private CA, a server certificate for
# asflowd signed by it (valid for NAME..., localhost and 127.0.0.1), a
# client certificate for mutual TLS, and two bearer tokens (clients,
# workers), as files in DIR:
#   ca.pem ca.key server.pem server.key client.pem client.key client.token worker.token
# Keys and tokens are created mode 0600. For production use your own CA;
# the openssl commands below are the whole recipe (deploy/README.md).
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [DNS-NAME...]   e.g. $0 deploy/secrets asflowd daemon.example.org" >&2
  exit 2
fi
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077
days=${ASFLOW_CERT_DAYS:-825}
san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do san="$san,DNS:$name"; done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -subj "/CN=asflow CA" -keyout ca.key -out ca.pem 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=asflow $who" -keyout "$who.key" -out "$who.csr" 2>/dev/null
  if [ "$who" = server ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$who.ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$who.ext"
  fi
  openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$who.ext" -out "$who.pem" 2>/dev/null
  rm -f "$who.csr" "$who.ext"
done
rm -f ca.srl
openssl rand -hex 32 > client.token
openssl rand -hex 32 > worker.token
chmod 0644 ca.pem server.pem client.pem
echo "made in $dir: ca.pem ca.key server.pem server.key client.pem client.key client.token worker.token (server names: $san)"
