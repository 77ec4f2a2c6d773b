# Issue 22 §3: `invoke secrets.rotate redis` on a Redis host (PHASE MAP AUTH ACLFILE PORT).
# MAP (uploaded): one line per Redis user, "USER OLD NEW", the SHA-256 hex of its current and
# its new password: hashes only, as the ACL file holds them. AUTH (uploaded): the admin
# password Redis takes now, handed to redis-cli through its environment, never argv. Users of
# MAP the ACL file does not have (another pipeline's shards) are left out. Each phase can run
# again:
#   check    changes nothing: no host mid-upgrade, every user of the file has its OLD hash
#            there and a line in MAP, and Redis takes AUTH as admin
#   overlap  the file and the running Redis add each NEW hash beside the OLD one: both
#            passwords log in while the units move over (a restart of Redis keeps both)
#   finish   only the NEW hashes: the file is then what a deploy renders from .secrets/
set -eu
phase=$1 map=$2 auth=$3 aclfile=$4 port=$5
# Where the role puts them (tests point these at a scratch Redis).
validate=${ARK_REDIS_VALIDATE:-/usr/local/sbin/ark-redis-validate}
conf=${ARK_REDIS_ARK_CONF:-/etc/redis/ark.conf}
tls=${ARK_REDIS_SERVER_TLS_DIR:-/etc/redis/tls}
REDISCLI_AUTH=$(cat "$auth")
export REDISCLI_AUTH
rm -f "$auth"

fail() { echo "$*" >&2; exit 65; }
# Issue #19 §4: a Redis on TLS answers on its tls-port only, to this host's certificate.
tls_port=$(sed -n 's/^tls-port \([0-9][0-9]*\)$/\1/p' "$conf" 2>/dev/null || :)
if [ -n "$tls_port" ] && [ "$tls_port" != 0 ]; then
  rcli() { redis-cli --no-auth-warning --tls --cacert "$tls/ca.crt" --cert "$tls/redis.crt" \
           --key "$tls/redis.key" --user admin -h 127.0.0.1 -p "$tls_port" "$@"; }
else
  rcli() { redis-cli --no-auth-warning --user admin -h 127.0.0.1 -p "$port" "$@"; }
fi
has_user() { grep -q "^user $1 " "$aclfile"; }

# The new file beside the old (same directory: the rename is atomic), checked by Redis itself
# as the role's `validate:` does, then moved in with the role's owner and mode.
rewrite() {  # MAKER: prints the sed script for one user's line, given OLD NEW
  tmp=$(mktemp "$aclfile.rotate.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  cp "$aclfile" "$tmp"
  while read -r user old new; do
    has_user "$user" || continue
    sed -i "/^user $user /$("$1" "$old" "$new")" "$tmp"
  done < "$map"
  "$validate" --aclfile "$tmp" || fail "the rotated ACL file does not parse: nothing changed"
  chown root:redis "$tmp"
  chmod 0640 "$tmp"
  mv -f "$tmp" "$aclfile"
  trap - EXIT
}
# sed scripts for one user's line (hashes are hex: nothing to escape). Adding keeps a NEW
# that is there already, so a second overlap changes nothing.
add_new() { printf 's/#%s\\( #%s\\)\\{0,1\\}\\( \\|$\\)/#%s #%s\\2/' "$1" "$2" "$1" "$2"; }
only_new() { printf 's/#%s #%s/#%s/' "$1" "$2" "$2"; }

case "$phase" in
  check)
    if [ -s "$aclfile.legacy-hosts" ]; then
      fail "Redis here keeps the shared password for hosts mid-upgrade ($(tr '\n' ' ' \
        < "$aclfile.legacy-hosts")): deploy every host first (invoke deploy)"
    fi
    [ "$(rcli ACL WHOAMI 2>&1)" = admin ] || fail "Redis on port $port does not take the admin \
password of .secrets/redis_password: run invoke deploy first"
    for user in $(sed -n 's/^user \([^ ]*\) .*/\1/p' "$aclfile"); do
      [ "$user" = default ] && continue
      line=$(grep "^$user " "$map") || fail "the ACL file has a user $user that .secrets/ has no \
password for: run invoke deploy first"
      old=$(echo "$line" | cut -d' ' -f2)
      grep -q "^user $user .*#$old" "$aclfile" || fail "the ACL file does not hold $user's \
password from .secrets/: run invoke deploy first"
    done
    echo "check: $(grep -c '^user ' "$aclfile") users, ready" ;;
  overlap)
    rewrite add_new
    while read -r user old new; do
      has_user "$user" || continue
      [ "$(rcli ACL SETUSER "$user" "#$new")" = OK ] || fail "ACL SETUSER $user failed"
    done < "$map"
    echo "overlap: old and new passwords both log in" ;;
  finish)
    while read -r user old new; do
      has_user "$user" || continue
      grep -q "^user $user .*#$new" "$aclfile" || fail "$user has no new password here yet: \
the overlap phase did not run"
    done < "$map"
    rewrite only_new
    while read -r user old new; do
      has_user "$user" || continue
      [ "$(rcli ACL SETUSER "$user" resetpass "#$new")" = OK ] || fail "ACL SETUSER $user failed"
    done < "$map"
    echo "finish: only the new passwords log in" ;;
  *)
    echo "redis_rotate.sh: unknown phase $phase" >&2
    exit 64 ;;
esac
rm -f "$map"
