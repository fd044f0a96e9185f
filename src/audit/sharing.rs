//! Git's `core.sharedRepository`, for the files the audit log creates:
//! in a repository shared by a group, the log, its checkpoint and their
//! directory must be writable by every member who pushes, as git makes the
//! repository's own files.

use std::fs::File;
use std::io;
use std::path::Path;

/// How files the log creates are shared, as git's `core.sharedRepository`
/// says for the files of the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// `umask`, `false`, `0` (or unset): the process's umask decides.
    #[default]
    Umask,
    /// `group`, `true`, `1`: group-writable (added to what the umask
    /// leaves); directories get the setgid bit.
    Group,
    /// `all`, `world`, `everybody`, `2`: as `Group`, and readable by all.
    Everybody,
    /// An octal mode such as `0660`: exactly these permissions (read
    /// bits copied to execute bits for directories), whatever the umask.
    Mode(u32),
}

impl Sharing {
    /// Read a `core.sharedRepository` value as git does.
    ///
    /// # Errors
    ///
    /// A message for a mode that does not give the owner read and write
    /// (git refuses it too).
    pub fn parse(value: &str) -> Result<Sharing, String> {
        match value {
            "umask" => return Ok(Sharing::Umask),
            "group" => return Ok(Sharing::Group),
            "all" | "world" | "everybody" => return Ok(Sharing::Everybody),
            _ => {}
        }
        let octal = value.is_empty() || value.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !octal {
            return match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Ok(Sharing::Group),
                "false" | "no" | "off" => Ok(Sharing::Umask),
                _ => Err(format!(
                    "core.sharedRepository `{value}` is not umask, group, all, a boolean or an octal mode"
                )),
            };
        }
        let mode = if value.is_empty() {
            0
        } else {
            u32::from_str_radix(value, 8)
                .map_err(|e| format!("core.sharedRepository `{value}`: {e}"))?
        };
        match mode {
            0 => Ok(Sharing::Umask),
            1 => Ok(Sharing::Group),
            2 => Ok(Sharing::Everybody),
            m if m & 0o600 != 0o600 => Err(format!(
                "core.sharedRepository `{value}`: the owner of files must always have read and write permissions"
            )),
            m => Ok(Sharing::Mode(m & 0o666)),
        }
    }

    /// The repository's `core.sharedRepository`; [`Sharing::Umask`] when
    /// unset or a value git itself would refuse (git then refuses to
    /// receive a push at all).
    pub fn of(repo: &git2::Repository) -> Sharing {
        repo.config()
            .ok()
            .map_or(Sharing::Umask, |c| Sharing::from_config(&c))
    }

    /// `core.sharedRepository` of `config`, as for [`Sharing::of`].
    pub fn from_config(config: &git2::Config) -> Sharing {
        match config.get_string("core.sharedRepository") {
            Ok(v) => Sharing::parse(&v).unwrap_or_default(),
            Err(_) => Sharing::Umask,
        }
    }

    /// The mode of a file or directory that was created with `mode` (what
    /// the umask left), as git's `adjust_shared_perm` computes it.
    pub fn mode(self, mode: u32, is_dir: bool) -> u32 {
        let (mut tweak, replace) = match self {
            Sharing::Umask => return mode,
            Sharing::Group => (0o660, false),
            Sharing::Everybody => (0o664, false),
            Sharing::Mode(m) => (m, true),
        };
        let mode = if is_dir { mode | 0o100 } else { mode };
        if mode & 0o200 == 0 {
            tweak &= !0o222;
        }
        if mode & 0o100 != 0 {
            tweak |= (tweak & 0o444) >> 2;
        }
        let mut new = if replace {
            (mode & !0o777) | tweak
        } else {
            mode | tweak
        };
        if is_dir {
            new |= (new & 0o444) >> 2;
            if new & 0o060 != 0 {
                new |= 0o2000;
            }
        }
        new
    }
}

/// Give the open file `file` the mode `sharing` asks for.
///
/// # Errors
///
/// The I/O error of a mode that could not be read or set. A file owned by
/// someone else (who may be unable to change it) is left as it is: that
/// this process could open it is what matters for the append.
pub fn share(file: &File, sharing: Sharing, is_dir: bool) -> io::Result<()> {
    if sharing == Sharing::Umask {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        let want = sharing.mode(mode, is_dir);
        if want != mode {
            match file.set_permissions(std::fs::Permissions::from_mode(want)) {
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                other => other?,
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, is_dir);
    Ok(())
}

pub use crate::owner::adopt_parent_owner;

/// Create `dir` and its missing parents, each with the mode `sharing`
/// asks for (as git does for the directories it creates; directories that
/// exist are left as they are).
///
/// # Errors
///
/// The I/O error of a directory that could not be created or changed.
pub fn create_dirs(dir: &Path, sharing: Sharing) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur.filter(|d| !d.as_os_str().is_empty()) {
        if d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {
                share(&File::open(d)?, sharing, true)?;
                adopt_parent_owner(d);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_repository_values_follow_git() {
        use Sharing::*;
        for (v, want) in [
            ("umask", Umask),
            ("false", Umask),
            ("0", Umask),
            ("", Umask),
            ("off", Umask),
            ("group", Group),
            ("true", Group),
            ("TRUE", Group),
            ("1", Group),
            ("all", Everybody),
            ("world", Everybody),
            ("everybody", Everybody),
            ("2", Everybody),
            ("0660", Mode(0o660)),
            ("0640", Mode(0o640)),
            ("0777", Mode(0o666)),
        ] {
            assert_eq!(Sharing::parse(v), Ok(want), "{v}");
        }
        for bad in ["0440", "0060", "sometimes", "9"] {
            assert!(Sharing::parse(bad).is_err(), "{bad}");
        }
        // Files: group/all add to what the umask left; a mode replaces it.
        for (s, umask_left, want) in [
            (Umask, 0o644, 0o644),
            (Group, 0o644, 0o664),
            (Group, 0o600, 0o660),
            (Everybody, 0o600, 0o664),
            (Mode(0o660), 0o644, 0o660),
            (Mode(0o640), 0o600, 0o640),
        ] {
            assert_eq!(s.mode(umask_left, false), want, "{s:?} {umask_left:o}");
        }
        // Directories: execute follows read, and setgid when the group
        // gets anything.
        for (s, umask_left, want) in [
            (Umask, 0o755, 0o755),
            (Group, 0o755, 0o2775),
            (Group, 0o700, 0o2770),
            (Everybody, 0o700, 0o2775),
            (Mode(0o660), 0o755, 0o2770),
            (Mode(0o600), 0o755, 0o700),
        ] {
            assert_eq!(s.mode(umask_left, true), want, "{s:?} {umask_left:o}");
        }
    }
}
