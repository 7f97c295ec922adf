# Throttled loop "disks" for the benchmark scripts (root only), sourced by scripts/sweep.sh and
# scripts/bench-multidisk.sh; the Rust tests' copy is engine/test-support/src/loopdisk.rs.
#
# A disk: a 64 MiB image file, a loop device on it, ext4, mounted, with plots copied onto it and
# its own cgroup-v1 blkio group limiting its read IOPS. Everything made carries a prefix:
# images and mounts under one folder (LAB), cgroups $loopdisk_cg_root/PREFIX-loopN.
# loopdisk_clean removes all of a prefix (rules lifted first, so held reads complete; then
# mounts, loop devices, LAB): call it before (what a killed run left) and from an EXIT trap.
#
#   why=$(loopdisk_unusable)           empty, or why disks cannot be made here
#   loopdisk_add PREFIX LAB I IOPS PLOT...
#                                      disk I; appends to loopdisk_mounts, loopdisk_devnos
#                                      (MAJOR:MINOR), loopdisk_cgroups, loopdisk_names (loopN)
#   loopdisk_clean PREFIX LAB          removes every disk and cgroup of PREFIX, and LAB
#
# Messages go through the caller's `say` when it has one.

loopdisk_cg_root=/sys/fs/cgroup/blkio
loopdisk_mounts=() loopdisk_devnos=() loopdisk_cgroups=() loopdisk_names=()

loopdisk_say() {
  if declare -F say >/dev/null; then say "$@"; else echo "loopdisk: $*" >&2; fi
}

loopdisk_unusable() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "needs root (loop devices, mount, cgroups)"
  elif [[ ! -f "$loopdisk_cg_root/blkio.throttle.read_iops_device" ]]; then
    echo "no cgroup-v1 blk-throttle at $loopdisk_cg_root"
  fi
}

loopdisk_add() {
  local prefix=$1 lab=$2 i=$3 iops=$4
  shift 4
  local img="$lab/$prefix-d$i.img" mnt="$lab/$prefix-d$i.mnt" dev name cg devno
  mkdir -p "$lab"
  truncate -s 64M "$img"
  dev=$(losetup --find --show "$img")
  name=${dev#/dev/}
  mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$dev"
  mkdir -p "$mnt"
  mount -t ext4 -o noatime "$dev" "$mnt"
  cp "$@" "$mnt/"
  sync -f "$mnt"
  cg="$loopdisk_cg_root/$prefix-$name"
  mkdir "$cg"
  devno=$(cat "/sys/block/$name/dev")
  echo "$devno $iops" >"$cg/blkio.throttle.read_iops_device"
  loopdisk_mounts+=("$mnt") loopdisk_devnos+=("$devno") loopdisk_cgroups+=("$cg")
  loopdisk_names+=("$name")
}

# Lifts a cgroup's read limits (releasing the reads it holds), moves its tasks back to the root,
# removes it (retrying for 5 s while tasks leave).
loopdisk_release_cgroup() {
  local cg=$1 file dev rest tid rules
  for file in blkio.throttle.read_bps_device blkio.throttle.read_iops_device; do
    # Read whole first: lifting a rule rewrites the file being read.
    rules=$(cat "$cg/$file")
    while read -r dev rest; do
      if [[ -n "$dev" ]]; then
        echo "$dev 0" >"$cg/$file" || loopdisk_say "$cg/$file: $dev 0 failed"
      fi
    done <<<"$rules"
  done
  for _ in $(seq 100); do
    for tid in $(cat "$cg/tasks" 2>/dev/null); do
      echo "$tid" >"$loopdisk_cg_root/tasks" 2>/dev/null || true
    done
    rmdir "$cg" 2>/dev/null && return 0
    [[ -d "$cg" ]] || return 0
    sleep 0.05
  done
  loopdisk_say "cgroup $cg not removed"
}

# Unmounts, retrying for 3 s while busy, then detaches lazily.
loopdisk_unmount() {
  local point=$1
  for _ in $(seq 30); do
    umount "$point" 2>/dev/null && return 0
    awk -v p="$point" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo || return 0
    sleep 0.1
  done
  loopdisk_say "$point busy, detaching lazily"
  umount -l "$point"
}

loopdisk_clean() {
  local prefix=$1 lab=$2 cg point sys backing
  [[ $(id -u) -eq 0 && -d "$loopdisk_cg_root" ]] || return 0
  for cg in "$loopdisk_cg_root/$prefix"-*/; do
    if [[ -d "$cg" ]]; then loopdisk_release_cgroup "${cg%/}"; fi
  done
  for point in $(awk -v d="$lab/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    loopdisk_unmount "$point" || loopdisk_say "umount $point failed"
  done
  for sys in /sys/block/loop*; do
    backing=$(cat "$sys/loop/backing_file" 2>/dev/null) || continue
    if [[ "$backing" == "$lab/"* ]]; then
      losetup -d "/dev/${sys##*/}" || loopdisk_say "losetup -d ${sys##*/} failed"
    fi
  done
  rm -rf "$lab"
  loopdisk_mounts=() loopdisk_devnos=() loopdisk_cgroups=() loopdisk_names=()
}
