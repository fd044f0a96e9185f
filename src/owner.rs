//! Files root makes in a repository it does not own: shared by the audit
//! log, the ref-state log, the policy trust file and the verification
//! cache, at every level of the push path.

use std::path::Path;

/// Give `path`, just created, to the owner of its directory when root
/// created it in a directory root does not own: an admin command run as
/// root must not leave a file (the audit log, a lock, the log key) that the
/// user the hook runs as can no longer open. Best effort: a failure leaves
/// the file as it is (the hook then reports it cannot open it).
pub fn adopt_parent_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(meta), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
            return;
        };
        let Ok(dir) = std::fs::metadata(parent) else {
            return;
        };
        if meta.uid() == 0 && dir.uid() != 0 {
            let _ = std::os::unix::fs::lchown(path, Some(dir.uid()), Some(dir.gid()));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
