#!/usr/bin/env bash
# The main job, end to end, with no network: a local devnet with one legacy and
# one current-generation provider, then providers, create on each, ssh, list,
# stop/start and destroy through the real `golem` command.
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
step "golem devnet up --providers 2 --current 1 --state-dir $state/devnet &"
golem devnet up --providers 2 --current 1 --state-dir "$state/devnet" \
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

step "golem vm providers --cpu 2 --memory 4 --storage 20 --sort price"
golem vm providers --cpu 2 --memory 4 --storage 20 --sort price

pick() { golem vm providers --json | python3 -c "import json,sys; print(next(p['provider_id'] for p in json.load(sys.stdin) if p['generation'] == '$1'))"; }
legacy=$(pick legacy)
current=$(pick current)
step "golem vm create my-webserver --provider-id $legacy --cpu 2 --memory 4 --storage 20   # legacy provider"
golem vm create my-webserver --provider-id "$legacy" --cpu 2 --memory 4 --storage 20

step "golem vm create my-database --provider-id $current --cpu 1 --memory 2 --storage 10   # current provider: async create"
golem vm create my-database --provider-id "$current" --cpu 1 --memory 2 --storage 10

step "golem vm ssh my-webserver -- 'echo \"hello from the VM, in \$PWD\"; uname -sr'"
golem vm ssh my-webserver -- 'echo "hello from the VM, in $PWD"; uname -sr'

step "golem vm list"
golem vm list

step "golem vm stop my-webserver"
golem vm stop my-webserver
step "golem vm list --refresh"
golem vm list --refresh
step "golem vm start my-webserver"
golem vm start my-webserver

step "golem vm stop my-database </dev/null   # its provider cannot start it again: golem asks first"
golem vm stop my-database </dev/null || echo "(exit $?: nothing stopped)"
step "golem vm stop my-database --yes"
golem vm stop my-database --yes

step "golem vm destroy --all --yes"
golem vm destroy --all --yes
step "golem vm list"
golem vm list
printf '\nDemo finished: the devnet is stopped and its folder removed.\n'
