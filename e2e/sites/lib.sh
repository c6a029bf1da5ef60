# Shared setup of the remote-site scripts (sourced): the rendezvous service's test PKI and site
# tokens, and its configuration for one site `shop/branch1` and the recorders of `shop`.

# site_pki DIR: a test CA (ca.pem; the gateway and recorders pin it), the rendezvous's
# certificate for DNS:vigil-rendezvous (rv.pem, rv.key), and random site and recorder tokens
# (site.token, rec.token).
site_pki() {
  local d=$1
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=vigil-test-ca \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=vigil-rendezvous \
    -keyout "$d/rv.key" -out "$d/rv.csr" 2>/dev/null
  printf 'subjectAltName=DNS:vigil-rendezvous\n' >"$d/ext"
  openssl x509 -req -in "$d/rv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/rv.pem" 2>/dev/null
  head -c 24 /dev/urandom | base64 >"$d/site.token"
  head -c 24 /dev/urandom | base64 >"$d/rec.token"
}

# rendezvous_config DIR LISTEN CAMERA-NETWORK: DIR/rv.yaml for the PKI of site_pki, listening
# on LISTEN (host:port), the site's cameras allowed in CAMERA-NETWORK (a CIDR).
rendezvous_config() {
  local d=$1 listen=$2 allow=$3
  cat >"$d/rv.yaml" <<YAML
listen: $listen
certFile: $d/rv.pem
keyFile: $d/rv.key
sites:
  - {namespace: shop, name: branch1, tokenFile: $d/site.token, cameraNetworks: {allow: [$allow]}}
recorders:
  - {namespace: shop, tokenFile: $d/rec.token}
YAML
}
