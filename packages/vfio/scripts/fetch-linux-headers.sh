#!/usr/bin/env bash
# Fetches Linux 6.12 uapi headers (Debian linux-libc-dev from bookworm-backports) into
# packages/vfio/.headers, for the golden test of the iommufd and VFIO cdev layouts: bookworm's own
# linux-libc-dev (6.1) has no linux/iommufd.h. Uses a private apt state, so the system's sources
# and lists are untouched. Needs only Debian's archive.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$here/.headers"
if [ -f "$target/usr/include/linux/iommufd.h" ]; then
  echo "linux headers already in $target"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
echo "deb http://deb.debian.org/debian bookworm-backports main" > "$work/sources.list"
apt_options=(-q -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_options[@]}" update >/dev/null
(cd "$work" && apt-get "${apt_options[@]}" download linux-libc-dev/bookworm-backports >/dev/null)
rm -rf "$target"
dpkg -x "$work"/linux-libc-dev_*.deb "$target"
echo "linux headers $(basename "$work"/linux-libc-dev_*.deb .deb) in $target"
