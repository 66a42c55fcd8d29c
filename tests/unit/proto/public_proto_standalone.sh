#!/bin/sh
# The public API stands alone: gateway.proto compiles with only the public files on the include
# path (gateway.proto, accounts.proto, common.proto), never an internal service's proto.
# Usage: public_proto_standalone.sh <protoc> <proto source dir>
set -eu
protoc=$1
src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/in/padlock/v1" "$work/out"
for f in gateway.proto accounts.proto common.proto; do
  cp "$src/padlock/v1/$f" "$work/in/padlock/v1/$f"
done
# Every import of a public file must be another public file.
for f in "$work"/in/padlock/v1/*.proto; do
  grep -E '^import ' "$f" | while read -r _ name; do
    case "$name" in
      '"padlock/v1/gateway.proto";' | '"padlock/v1/accounts.proto";' | '"padlock/v1/common.proto";') ;;
      *) echo "FAIL: $(basename "$f") imports $name, which is not public"; exit 1 ;;
    esac
  done
done
"$protoc" -I"$work/in" --cpp_out="$work/out" \
  padlock/v1/gateway.proto padlock/v1/accounts.proto padlock/v1/common.proto
echo "OK: gateway.proto compiles with only gateway.proto, accounts.proto and common.proto"
