#!/usr/bin/env bash
# Add or change a broker user in deploy/passwd (Mosquitto password_file).
#
#   deploy/mqtt-passwd.sh gateway 'a-long-secret'     # the gateway workers' user
#   deploy/mqtt-passwd.sh tech-0042 'device-secret'   # one user per device; username = device id
#   deploy/mqtt-passwd.sh alice 'phone-secret'        # OwnTracks: the app's username
#
# Usernames must be valid device ids ([A-Za-z0-9_.:-], no "/", "+" or "#") and
# never "out" or "deadletter" (the gateway's output topics). The file holds
# salted PBKDF2-SHA512 hashes; the broker re-reads it on SIGHUP
# (docker compose kill -s HUP mosquitto). Uses a local mosquitto_passwd, or the
# one in the eclipse-mosquitto image.
set -euo pipefail
cd "$(dirname "$0")"

[ $# -eq 2 ] || { echo "usage: $0 USERNAME PASSWORD" >&2; exit 2; }
user=$1 password=$2
case $user in
  out|deadletter) echo "mqtt-passwd: '$user' is reserved for the gateway's topics" >&2; exit 2 ;;
esac
[[ $user =~ ^[A-Za-z0-9_.:-]{1,64}$ ]] || { echo "mqtt-passwd: '$user' is not a valid device id" >&2; exit 2; }

create=()
[ -s passwd ] || create=(-c)
if command -v mosquitto_passwd >/dev/null; then
  mosquitto_passwd -b "${create[@]}" passwd "$user" "$password"
else
  docker run --rm -v "$PWD:/d" eclipse-mosquitto:2.0.20 \
    mosquitto_passwd -b "${create[@]}" /d/passwd "$user" "$password"
fi
# The broker runs as uid 1883 in its image and must read the file.
chmod 0644 passwd
echo "mqtt-passwd: $user set in deploy/passwd"
