//! The state directory (`vipr_state_dir`) and the files in it (addresses, IPVS services,
//! restart markers). vipr runs as root: a directory someone else can write to would let them
//! point a state file at any file on the node (a symlink) or plant entries. So the directory
//! is checked once at start — a real directory (not a symlink), owned by vipr's user, not
//! writable by group or others; created `0700` when missing — and every file in it is opened
//! with `O_NOFOLLOW`. A failed check stops the start with the reason.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` if missing and checks that only vipr's user can change what is in it.
pub fn prepare(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("state directory {shown}: cannot create it: {e}"))?;
        }
        Err(e) => return Err(format!("state directory {shown}: {e}")),
        Ok(_) => {}
    }
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("state directory {shown}: {e}"))?;
    check(&m, unsafe { libc::geteuid() }).map_err(|why| {
        format!("state directory {shown}: {why}; vipr records which addresses it owns there and will not trust it")
    })
}

/// The checks on the directory's own metadata, for `euid`.
fn check(m: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    if m.file_type().is_symlink() {
        return Err("is a symbolic link".into());
    }
    if !m.is_dir() {
        return Err("is not a directory".into());
    }
    if m.uid() != euid {
        return Err(format!(
            "is owned by uid {}, not by vipr's uid {euid}",
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

fn nofollow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    o
}

/// Reads a state file; a symlink is an error (ELOOP), never followed.
pub fn read(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    nofollow().read(true).open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// Appends to a state file (created `0600`).
pub fn append(path: &Path, text: &str) -> io::Result<()> {
    nofollow()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Replaces a state file whole: written to `<path>.tmp` (any leftover removed first, not
/// followed), then renamed over it, so a crash leaves the old or the new file, never half.
pub fn replace(path: &Path, text: &str) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f: File = nofollow()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("vipr-statedir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_private_and_files_never_follow_links() {
        let base = tmp("ok");
        let d = base.join("state");
        prepare(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let f = d.join("addresses");
        replace(&f, "lo 192.0.2.1/32\n").unwrap();
        append(&f, "lo 192.0.2.2/32\n").unwrap();
        assert_eq!(read(&f).unwrap(), "lo 192.0.2.1/32\nlo 192.0.2.2/32\n");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        // A symlink planted in place of a state file: never followed, in any direction.
        let victim = base.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let link = d.join("ipvs-services");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(read(&link).is_err());
        assert!(append(&link, "x\n").is_err());
        std::os::unix::fs::symlink(&victim, d.join("ipvs-services.tmp")).unwrap();
        replace(&link, "192.0.2.1:6443\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(read(&link).unwrap(), "192.0.2.1:6443\n");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_or_a_symlink_is_refused() {
        let base = tmp("bad");
        let d = base.join("state");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = prepare(&d).unwrap_err();
        assert!(e.contains("writable by group or others (mode 1777)"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&d).unwrap();
        let link = base.join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(prepare(&link).unwrap_err().contains("symbolic link"));
        let m = std::fs::symlink_metadata(&d).unwrap();
        let other = m.uid() + 1;
        assert!(check(&m, other).unwrap_err().contains("is owned by uid"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
