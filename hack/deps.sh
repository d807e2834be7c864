#!/usr/bin/env bash
# Installs what the tests need, idempotently, and caches it under $1:
#   - Debian packages: runc, fuse3 (fusermount3), containerd 1.6 (ctr),
#     systemd (systemd-analyze verify checks the shipped unit), uidmap
#     (newuidmap, for rootlesskit);
#   - containerd 2.x (containerd, ctr, containerd-shim-runc-v2) built with go install;
#   - rootlesskit built with go install (the rootless containerd test).
set -euo pipefail
tools="$(realpath -m "${1:?usage: deps.sh TOOLS_DIR}")"
containerd2_version="${CONTAINERD2_VERSION:-v2.4.2}"
rootlesskit_version="${ROOTLESSKIT_VERSION:-v2.3.6}"

need_apt=()
command -v runc >/dev/null || need_apt+=(runc)
command -v fusermount3 >/dev/null || need_apt+=(fuse3)
[ -x /usr/bin/containerd ] || need_apt+=(containerd)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
command -v newuidmap >/dev/null || need_apt+=(uidmap)
if [ "${#need_apt[@]}" -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing ${need_apt[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "deps: apt-get install ${need_apt[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian containerd package ships no service here, but make sure none
# of its daemons is left running to collide with the tests.

c2="$tools/containerd-$containerd2_version"
if [ ! -x "$c2/bin/containerd" ] || [ ! -x "$c2/bin/ctr" ] || [ ! -x "$c2/bin/containerd-shim-runc-v2" ]; then
	echo "deps: building containerd $containerd2_version into $c2 (a few minutes on a cold module cache)"
	mkdir -p "$c2/bin"
	GOBIN="$c2/bin" GOFLAGS=-buildvcs=false go install \
		"github.com/containerd/containerd/v2/cmd/containerd@$containerd2_version" \
		"github.com/containerd/containerd/v2/cmd/ctr@$containerd2_version" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd2_version"
fi
ln -sfn "$c2" "$tools/containerd2"

rk="$tools/rootlesskit-$rootlesskit_version"
if [ ! -x "$rk/bin/rootlesskit" ]; then
	echo "deps: building rootlesskit $rootlesskit_version into $rk"
	mkdir -p "$rk/bin"
	GOBIN="$rk/bin" GOFLAGS=-buildvcs=false go install \
		"github.com/rootless-containers/rootlesskit/v2/cmd/rootlesskit@$rootlesskit_version"
fi
ln -sfn "$rk" "$tools/rootlesskit"
echo "deps: ok (containerd 2: $tools/containerd2/bin, containerd 1.6: /usr/bin, rootlesskit: $tools/rootlesskit/bin)"
