#!/usr/bin/env bash
# The main job, end to end, with no network: a local devnet, then providers,
# create, ssh, list, stop/start and destroy through the real `golem` command.
# Everything runs on loopback (127.0.0.0/8) in a throwaway folder.
set -euo pipefail

state=$(mktemp -d "${TMPDIR:-/tmp}/golem-demo.XXXXXX")
devnet_pid=""
cleanup() {
    if [ -n "$devnet_pid" ] && kill -0 "$devnet_pid" 2>/dev/null; then
        kill -INT "$devnet_pid" 2>/dev/null || true
        wait "$devnet_pid" 2>/dev/null || true
    fi
    rm -rf "$state"
}
trap cleanup EXIT

# Keep the demo away from the user's own ~/.golem and ~/.ssh keys.
export HOME="$state/home"
mkdir -p "$HOME"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# A random loopback block, so the demo does not collide with a devnet already up.
block="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1))"
step "golem devnet up --providers 3 --state-dir $state/devnet &"
golem devnet up --providers 3 --state-dir "$state/devnet" \
    --base-address "$block.11" --discovery-port 9001 >"$state/devnet.out" 2>"$state/devnet.err" &
devnet_pid=$!
for _ in $(seq 1 100); do
    [ -s "$state/devnet/env" ] && break
    kill -0 "$devnet_pid" 2>/dev/null || { cat "$state/devnet.err"; exit 1; }
    sleep 0.1
done
[ -s "$state/devnet/env" ] || { echo "devnet did not start"; cat "$state/devnet.err"; exit 1; }
cat "$state/devnet/env"
# shellcheck disable=SC1091
source "$state/devnet/env"

step "golem vm providers"
golem vm providers

provider=$(golem vm providers --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["provider_id"])')
step "golem vm create my-webserver --provider-id $provider --cpu 2 --memory 4 --storage 20"
golem vm create my-webserver --provider-id "$provider" --cpu 2 --memory 4 --storage 20

step "golem vm create my-database --cpu 1 --memory 2 --storage 10   # golem picks the provider"
golem vm create my-database --cpu 1 --memory 2 --storage 10

step "golem vm ssh my-webserver -- 'echo \"hello from the VM, in \$PWD\"; uname -sr'"
golem vm ssh my-webserver -- 'echo "hello from the VM, in $PWD"; uname -sr'

step "golem vm list"
golem vm list

step "golem vm stop my-database"
golem vm stop my-database
step "golem vm list --refresh"
golem vm list --refresh
step "golem vm start my-database"
golem vm start my-database

step "golem vm destroy --all --yes"
golem vm destroy --all --yes
step "golem vm list"
golem vm list
printf '\nDemo finished: the devnet is stopped and its folder removed.\n'
