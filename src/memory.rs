//! How much memory this process may use, so that caches can be sized to the machine or
//! container the server runs in rather than to a constant.

use std::path::Path;

/// The memory this process may use: the machine's (`MemTotal`), or less where a control
/// group limits the process or one of the groups above it (a container's or a systemd
/// unit's `memory.max`, or cgroup v1's `memory.limit_in_bytes`). `None` when not even the
/// machine's memory can be read (not Linux).
pub fn available() -> Option<u64> {
    available_in(|path| std::fs::read_to_string(path).ok())
}

/// [`available`], reading files through `read` (tests give it a made-up filesystem).
fn available_in(read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let machine = read(Path::new("/proc/meminfo")).and_then(|info| {
        let kib = info
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))?;
        let kib = kib.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
        Some(kib.saturating_mul(1024))
    });
    let groups = read(Path::new("/proc/self/cgroup")).unwrap_or_default();
    let limits = groups.lines().filter_map(|line| {
        // `hierarchy-id:controllers:path`; cgroup v2's single hierarchy is `0::path`.
        let mut fields = line.splitn(3, ':');
        let (id, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let (mount, file) = if id == "0" && controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            return None;
        };
        group_limit(&read, Path::new(mount), path, file)
    });
    limits.chain(machine).min()
}

/// The lowest limit set in `file` for the group at `path` or a group above it. Inside a
/// container the path named may be the host's and missing from the container's view,
/// where the container's own group is the mount's root: the root is always read too.
/// Unlimited reads as `max` (v2) or a number near `i64::MAX` (v1), above any machine.
fn group_limit(
    read: &impl Fn(&Path) -> Option<String>,
    mount: &Path,
    path: &str,
    file: &str,
) -> Option<u64> {
    // `a/b` has the ancestors `a/b`, `a` and `` (the mount's root).
    Path::new(path.trim_start_matches('/'))
        .ancestors()
        .filter_map(|group| read(&mount.join(group).join(file))?.trim().parse().ok())
        .min()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;

    const MEMINFO: &str = "MemTotal:       24684092 kB\nMemFree:         1000000 kB\n";
    const MACHINE: u64 = 24_684_092 * 1024;

    fn with(files: &[(&str, &str)]) -> Option<u64> {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, text)| (PathBuf::from(path), text.to_string()))
            .collect();
        available_in(|path| files.get(path).cloned())
    }

    #[test]
    fn without_a_limit_it_is_the_machine_memory() {
        assert_eq!(with(&[("/proc/meminfo", MEMINFO)]), Some(MACHINE));
        let v2 = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/system.slice/x.service\n"),
            ("/sys/fs/cgroup/system.slice/x.service/memory.max", "max\n"),
        ];
        assert_eq!(with(&v2), Some(MACHINE));
        let v1 = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "4:memory:/\n0::/\n"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ];
        assert_eq!(with(&v1), Some(MACHINE));
        assert_eq!(with(&[]), None);
    }

    #[test]
    fn a_cgroup_v2_limit_on_the_group_or_one_above_it_bounds_it() {
        let unit = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/system.slice/x.service\n"),
            (
                "/sys/fs/cgroup/system.slice/x.service/memory.max",
                "2147483648\n",
            ),
        ];
        assert_eq!(with(&unit), Some(2 << 30));
        let slice = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/system.slice/x.service\n"),
            ("/sys/fs/cgroup/system.slice/x.service/memory.max", "max\n"),
            ("/sys/fs/cgroup/system.slice/memory.max", "1073741824\n"),
        ];
        assert_eq!(with(&slice), Some(1 << 30));
        // In a container, /proc/self/cgroup says `0::/` and the limit is at the root.
        let container = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/\n"),
            ("/sys/fs/cgroup/memory.max", "536870912\n"),
        ];
        assert_eq!(with(&container), Some(512 << 20));
    }

    #[test]
    fn a_cgroup_v1_limit_bounds_it_even_when_the_path_named_is_the_hosts() {
        let files = [
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "5:cpu:/\n4:memory:/docker/abc\n0::/\n"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "1073741824\n",
            ),
        ];
        assert_eq!(with(&files), Some(1 << 30));
        // A limit above the machine's memory leaves the machine's.
        let above = [
            ("/proc/meminfo", "MemTotal: 1048576 kB\n"),
            ("/proc/self/cgroup", "4:memory:/docker/abc\n"),
            (
                "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
                "4294967296\n",
            ),
        ];
        assert_eq!(with(&above), Some(1 << 30));
    }
}
