#!/usr/bin/env bash
# Installs or upgrades kvnode on one board over ssh:
#
#   deploy/install.sh [--dry-run] HOST ENVFILE [BINARY]
#
#   HOST     an ssh destination, e.g. root@192.0.2.11 (a non-root user needs
#            password-less sudo; set KVNODE_SUDO= to run without sudo)
#   ENVFILE  the board's settings, e.g. deploy/config/n1.env; it becomes
#            /etc/kvnode/kvnode.env
#   BINARY   the kvnode to install (default bin/linux-arm/kvnode, from
#            `make release`; use bin/linux-arm64/kvnode on arm64 boards)
#
# It copies the binary, the env file and deploy/systemd/kvnode.service to a
# staging directory on HOST, then creates the kvnode user and /etc/kvnode if
# missing, installs the three files, reloads systemd, enables the service and
# (re)starts it. Every step is safe to repeat: running it again with the same
# files leaves the board as it was (one restart). --dry-run prints the
# commands instead of running them. SSH and SCP (default ssh and scp) and
# SSH_OPTS (extra options for both, split on spaces) choose the ssh client.
set -euo pipefail

usage() {
	echo "usage: $0 [--dry-run] HOST ENVFILE [BINARY]" >&2
	exit 2
}

dry_run=0
args=()
for a in "$@"; do
	case "$a" in
	--dry-run) dry_run=1 ;;
	-h | --help) usage ;;
	-*) echo "install.sh: unknown option $a" >&2; usage ;;
	*) args+=("$a") ;;
	esac
done
((${#args[@]} >= 2 && ${#args[@]} <= 3)) || usage

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
host="${args[0]}"
envfile="${args[1]}"
binary="${args[2]:-$root/bin/linux-arm/kvnode}"
unit="$here/systemd/kvnode.service"

ssh_cmd="${SSH:-ssh}"
scp_cmd="${SCP:-scp}"
read -r -a ssh_opts <<<"${SSH_OPTS:-}"
sudo="${KVNODE_SUDO-sudo}"
[[ "$host" == root@* ]] && sudo=""

fail() {
	echo "install.sh: $*" >&2
	exit 2
}
[[ -f "$envfile" ]] || fail "env file $envfile not found"
grep -q '^KVNODE_ID=.' "$envfile" || fail "env file $envfile sets no KVNODE_ID"
[[ -f "$unit" ]] || fail "unit $unit not found"
if ((!dry_run)); then
	[[ -x "$binary" ]] || fail "binary $binary not found or not executable (run make release)"
fi

stage=/var/tmp/kvnode-install
user=kvnode

# quote prints its argument quoted for a POSIX shell (bare when it is safe).
quote() {
	if [[ "$1" =~ ^[A-Za-z0-9_./:@=,+%-]+$ ]]; then
		printf '%s' "$1"
	else
		printf "'%s'" "${1//\'/\'\\\'\'}"
	fi
}

# words prints its arguments as one shell command line.
words() {
	local out="" w
	for w in "$@"; do
		out+="${out:+ }$(quote "$w")"
	done
	printf '%s' "$out"
}

# run prints (--dry-run) or runs one local command.
run() {
	if ((dry_run)); then
		words "$@"
		echo
	else
		"$@"
	fi
}

# remote_sh runs one shell command line on HOST as the ssh user.
remote_sh() {
	run "$ssh_cmd" "${ssh_opts[@]}" "$host" "$1"
}

# remote runs one command on HOST as root (through sudo unless HOST is
# root@...). ssh hands the remote shell one string, so every word is quoted.
remote() {
	remote_sh "$(words $sudo "$@")"
}

remote_sh "$(words install -d -m 0700 "$stage")"
run "$scp_cmd" "${ssh_opts[@]}" -q "$binary" "$host:$stage/kvnode"
run "$scp_cmd" "${ssh_opts[@]}" -q "$envfile" "$host:$stage/kvnode.env"
run "$scp_cmd" "${ssh_opts[@]}" -q "$unit" "$host:$stage/kvnode.service"
remote_sh "getent passwd $user >/dev/null || $(words $sudo useradd --system --user-group --home-dir /var/lib/kvnode --no-create-home --shell /usr/sbin/nologin "$user")"
remote install -d -m 0750 -o root -g "$user" /etc/kvnode
# The new binary goes in beside the old one and is renamed over it, so a
# running kvnode keeps its file and the switch is atomic.
remote install -m 0755 -o root -g root "$stage/kvnode" /usr/local/bin/.kvnode.new
remote mv -f /usr/local/bin/.kvnode.new /usr/local/bin/kvnode
remote install -m 0640 -o root -g "$user" "$stage/kvnode.env" /etc/kvnode/kvnode.env
remote install -m 0644 -o root -g root "$stage/kvnode.service" /etc/systemd/system/kvnode.service
remote rm -rf "$stage"
remote systemctl daemon-reload
remote systemctl enable kvnode.service
remote systemctl restart kvnode.service
remote systemctl is-active kvnode.service
