#!/usr/bin/env bash
# Installs what the tests need, idempotently, and caches it under $1:
#   - Debian packages: runc, fuse3 (fusermount3), containerd 1.6 (ctr),
#     systemd (systemd-analyze verify checks the shipped unit), uidmap
#     (newuidmap, for rootlesskit);
#   - containerd 2.x (containerd, ctr, containerd-shim-runc-v2) built with go install;
#   - rootlesskit built with go install (the rootless containerd test);
#   - nerdctl, built from its module (the nerdctl test).
set -euo pipefail
tools="$(realpath -m "${1:?usage: deps.sh TOOLS_DIR}")"
containerd2_version="${CONTAINERD2_VERSION:-v2.4.2}"
rootlesskit_version="${ROOTLESSKIT_VERSION:-v2.3.6}"
# v2.0.4 and later require a nested module (mod/tigron) through a local
# replace, which a build from the module proxy cannot resolve.
nerdctl_version="${NERDCTL_VERSION:-v2.0.3}"

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

nd="$tools/nerdctl-$nerdctl_version"
if [ ! -x "$nd/bin/nerdctl" ]; then
	echo "deps: building nerdctl $nerdctl_version into $nd"
	mkdir -p "$nd/bin" "$nd/src"
	# `go install ...@version` also asks the module proxy for nerdctl's
	# version list (to report a deprecation), which the proxy may refuse: a
	# throwaway module that requires the exact version builds the same
	# binary from the same sources.
	printf 'module nerdctl-build\n\ngo 1.26\n\nrequire github.com/containerd/nerdctl/v2 %s\n' "$nerdctl_version" >"$nd/src/go.mod"
	(cd "$nd/src" && GOFLAGS="-buildvcs=false ${GOFLAGS:-}" go build -mod=mod -o "$nd/bin/nerdctl" github.com/containerd/nerdctl/v2/cmd/nerdctl)
fi
ln -sfn "$nd" "$tools/nerdctl"
echo "deps: ok (containerd 2: $tools/containerd2/bin, containerd 1.6: /usr/bin, rootlesskit: $tools/rootlesskit/bin, nerdctl: $tools/nerdctl/bin)"
