#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the Padlock binaries link directly
# (the RUNTIME_PACKAGES default of the Dockerfile), for a build directory or a list of binaries.
#   deploy/image/runtime-packages.sh /work/build-x
set -euo pipefail
bins=()
for a in "$@"; do
  if [ -d "$a" ]; then
    while IFS= read -r b; do bins+=("$b"); done < <(find "$a/services" -type f -perm -u+x \
      \( -name padlock-gateway -o -name padlock-presence -o -name padlock-message-queue \
         -o -name padlock-key-directory -o -name padlock-notifier -o -name padlock-healthcheck \))
  else
    bins+=("$a")
  fi
done
[ ${#bins[@]} -gt 0 ] || { echo "usage: $0 BUILD_DIR|BINARY..." >&2; exit 2; }
for b in "${bins[@]}"; do objdump -p "$b" | awk '/NEEDED/{print $2}'; done | sort -u |
  while read -r lib; do
    path="$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF}' | head -n1 || true)"
    [ -n "$path" ] || { echo "unresolved: $lib" >&2; continue; }
    { dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null ||
        echo "unowned:$path"; } | cut -d: -f1
  done | grep -v -x -E 'libc6|libgcc-s1' | sort -u | tr '\n' ' '
echo
