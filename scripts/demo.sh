#!/usr/bin/env bash
# The Padlock demo: with the local stack up (`scripts/padlock up`: gateway 127.0.0.1:7400, Redis
# 127.0.0.1:7379), alice, bob and carol use the `padlock` CLI to register, exchange
# end-to-end-encrypted messages both ways (with delivery and read receipts), talk in a group of
# three (Sender Keys), and bob goes offline while alice writes, then comes back and receives
# everything in order. It prints the conversation, then what Redis held in bob's
# inbox while he was away — ciphertext only — and checks that no plaintext was there.
#
# Device folders live in $PADLOCK_STATE_DIR/demo (default .padlock/demo) and are reused on the
# next run while the server still knows them, so repeated runs stay within the production
# registration limit (5 per address, then 1 per 12 minutes).
#
# Environment: PADLOCK_BUILD_DIR (./build), PADLOCK_STATE_DIR (./.padlock), PADLOCK_DEMO_GATEWAY
# (127.0.0.1:7400), PADLOCK_LOCAL_REDIS_PORT (7379), PADLOCK_DEMO_REDIS_CLI (the command that runs
# redis-cli against the stack's Redis; default `redis-cli -p $PADLOCK_LOCAL_REDIS_PORT`, e.g.
# `docker-compose exec -T redis redis-cli` for the composed stack). Exit 0 on success, 1 with a
# message otherwise.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${PADLOCK_BUILD_DIR:-$REPO/build}"
STATE_DIR="${PADLOCK_STATE_DIR:-$REPO/.padlock}"
GATEWAY="${PADLOCK_DEMO_GATEWAY:-127.0.0.1:7400}"
REDIS_PORT="${PADLOCK_LOCAL_REDIS_PORT:-7379}"
DEMO_DIR="$STATE_DIR/demo"
CLI="$BUILD_DIR/clients/padlock"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$CLI" ] || fail "$CLI is not built (scripts/padlock build)"
if [ -n "${PADLOCK_DEMO_REDIS_CLI:-}" ]; then
  read -r -a REDIS_CLI <<<"$PADLOCK_DEMO_REDIS_CLI"
else
  command -v redis-cli >/dev/null || fail "redis-cli not found"
  REDIS_CLI=(redis-cli -p "$REDIS_PORT")
fi
mkdir -p "$DEMO_DIR"
chmod 700 "$DEMO_DIR"

pl() {  # pl NAME ARGS...: run the CLI as NAME's device
  local who="$1"; shift
  "$CLI" --home "$DEMO_DIR/$who" --gateway "$GATEWAY" "$@"
}

# Ensures a registered device folder for role NAME; prints the user id it uses. A folder the
# server still accepts is reused; otherwise it is recreated and registered (with a suffix when the
# plain name is taken by an earlier, lost folder).
ensure_user() {
  local role="$1" home="$DEMO_DIR/$1" user out rc
  if [ -s "$home/user" ]; then
    rc=0
    out=$(pl "$role" status 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
      cat "$home/user"
      return
    fi
    # Only a server that answers and refuses the device makes a folder worthless.
    [ "$rc" -ne 3 ] || fail "cannot reach the gateway at $GATEWAY (is the stack up?)"
  fi
  rm -rf "$home"
  for user in "$role" "$role-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"; do
    rc=0
    out=$(pl "$role" register "$user" 2>&1) || rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "$user" >"$home/user"
      echo "$user"
      return
    fi
    case "$out" in
      *"is taken"*) rm -rf "$home"; continue ;;
      *) fail "register $user: $out" ;;
    esac
  done
  fail "could not register a user for $role"
}

say "Registering (or reusing) alice, bob and carol"
ALICE=$(ensure_user alice)
BOB=$(ensure_user bob)
CAROL=$(ensure_user carol)
echo "alice is '$ALICE', bob is '$BOB', carol is '$CAROL' (device folders in $DEMO_DIR)"

say "alice links a second device (her laptop)"
LAPTOP="$DEMO_DIR/alice-laptop"
if [ "$(cat "$LAPTOP/user" 2>/dev/null)" = "$ALICE" ] && pl alice-laptop status >/dev/null 2>&1; then
  echo "(reusing the laptop linked in an earlier run)"
else
  rm -rf "$LAPTOP"
  pl alice-laptop --json link "$ALICE" --timeout 60 >"$DEMO_DIR/link.out" 2>&1 &
  link_pid=$!
  code=""
  for _ in $(seq 1 100); do  # the code appears as soon as the laptop made its keys
    code=$(sed -n 's/.*"link_code":"\([^"]*\)".*/\1/p' "$DEMO_DIR/link.out")
    [ -n "$code" ] && break
    sleep 0.1
  done
  [ -n "$code" ] || fail "the laptop printed no link code: $(cat "$DEMO_DIR/link.out")"
  echo "the laptop shows a link code (${code:0:24}…); alice approves it on her phone:"
  pl alice link-approve "$code" || fail "alice could not approve the link"
  wait "$link_pid" || fail "the laptop did not finish linking: $(cat "$DEMO_DIR/link.out")"
  echo "$ALICE" >"$LAPTOP/user"
  # No wait needed: the message-queue checks bob's next send against alice's current list, so a
  # send that lacks the laptop is refused and bob's client fetches it (docs/MESSAGE_QUEUE.md).
fi
pl alice devices

# Leftovers of an earlier run (receipts, messages never fetched) would interleave with this one.
for who in alice alice-laptop bob carol; do pl "$who" listen --timeout 2 >/dev/null 2>&1 || true; done

say "alice → bob, bob → alice (alice's laptop gets both)"
pl alice send "$BOB" "Hi Bob! This is end-to-end encrypted." || fail "alice could not send"
out=$(pl bob listen --count 1 --timeout 20) || fail "bob did not receive alice's message: $out"
echo "$out"
pl bob send "$ALICE" "Hi Alice, got it. The server only saw ciphertext." || fail "bob could not send"
out=$(pl alice listen --count 1 --timeout 20) || fail "alice did not receive bob's reply: $out"
echo "$out"
out=$(pl alice-laptop listen --count 2 --timeout 20) || fail "alice's laptop missed messages: $out"
echo "alice's laptop:"
echo "$out"

say "A group of three (Sender Keys: one ciphertext, the server fans it out)"
GROUP=$(pl alice --json group create "friends" "$BOB" "$CAROL" | sed -n 's/.*"group":"\([0-9a-f]*\)".*/\1/p')
[ -n "$GROUP" ] || fail "alice could not create the group"
echo "alice created group 'friends' ($GROUP) with bob and carol"
pl alice group send "$GROUP" "Hello both of you!" || fail "alice could not send to the group"
for who in bob carol; do
  out=$(pl "$who" listen --count 1 --timeout 20) || fail "$who did not receive the group message: $out"
  echo "$who sees:"
  echo "$out"
done

say "bob goes offline; alice writes three messages"
OFFLINE_TEXTS=("Are you there?" "I'll keep writing while you're away." "Third and last one.")
for text in "${OFFLINE_TEXTS[@]}"; do
  pl alice send "$BOB" "$text" || fail "alice could not send '$text'"
done

INBOX="q:{$BOB:1}"
say "What Redis holds in bob's inbox ($INBOX) while he is offline"
echo "XLEN $INBOX = $("${REDIS_CLI[@]}" XLEN "$INBOX") (all that waits for bob, receipts included;"
echo "field e is the Envelope: message id, sender and recipient addresses, then the ciphertext)"
"${REDIS_CLI[@]}" --no-raw XRANGE "$INBOX" - + | cut -c1-150
raw=$("${REDIS_CLI[@]}" --raw XRANGE "$INBOX" - + | tr -d '\0')
for text in "${OFFLINE_TEXTS[@]}"; do
  if grep -qF -- "$text" <<<"$raw"; then fail "plaintext '$text' found in Redis"; fi
done
echo "(none of the three plaintexts appears in Redis: only Signal ciphertext, padded to a bucket)"

say "bob comes back online"
out=$(pl bob listen --count 3 --timeout 30) || fail "bob did not receive the backlog: $out"
echo "$out"
prev=0
for text in "${OFFLINE_TEXTS[@]}"; do
  line=$(grep -nF -- "$text" <<<"$out" | head -1 | cut -d: -f1)
  [ -n "$line" ] || fail "bob did not get '$text'"
  [ "$line" -gt "$prev" ] || fail "bob got '$text' out of order"
  prev=$line
done
echo "(all three, in the order alice wrote them)"
pl bob read "$ALICE" || fail "bob could not send a read receipt"
pl alice listen --timeout 3 >/dev/null 2>&1 || true  # collect bob's delivery and read receipts

say "The conversation as stored on alice's device"
pl alice history "$BOB"
say "The conversation as stored on bob's device"
pl bob history "$ALICE"
say "bob's inbox after he acknowledged everything"
echo "XLEN $INBOX = $("${REDIS_CLI[@]}" XLEN "$INBOX")"

say "Safety number alice ↔ bob (compare in person)"
pl alice safety-number "$BOB"
echo
echo "demo OK"
