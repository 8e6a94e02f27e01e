//! A small tmpfs that tests fill to the last byte: the full disk of the damaged-state tests. The
//! event log's and the gateway's tests both use it (the gateway includes this file by path).
//!
//! Mounting needs root (CAP_SYS_ADMIN). Where that is not permitted a test using it prints
//! `skipped: …` and passes; under `CI=true`, where `.ci/run` runs as root, it fails instead.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory, unmounted on drop.
pub struct SmallDisk {
    path: PathBuf,
    /// The temporary directory it is mounted on when it chose one itself; removed after the
    /// unmount (fields drop after `Drop::drop`).
    _mount_point: Option<tempfile::TempDir>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount -o size=…`) on a fresh temporary directory, or says on
    /// stderr why it cannot and returns `None`: the calling test is then skipped.
    #[allow(dead_code)] // each including test crate uses one of the two constructors
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut disk = SmallDisk::mount_on(dir.path(), size)?;
        disk._mount_point = Some(dir);
        Some(disk)
    }

    /// Mounts a tmpfs of `size` on `path`, created if missing; `None` as for [`SmallDisk::mount`].
    #[allow(dead_code)]
    pub fn mount_on(path: &Path, size: &str) -> Option<SmallDisk> {
        fs::create_dir_all(path).expect("create the mount point");
        let options = format!("size={size},mode=0700");
        match Command::new("mount")
            .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
            .arg(path)
            .output()
        {
            Ok(out) if out.status.success() => Some(SmallDisk {
                path: path.to_owned(),
                _mount_point: None,
            }),
            Ok(out) => {
                skip_unless_ci(format!(
                    "skipped: cannot mount a {size} tmpfs on {} ({}); this test needs root \
                     (CAP_SYS_ADMIN)",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                None
            }
            Err(e) => {
                skip_unless_ci(format!(
                    "skipped: cannot run `mount` ({e}); this test needs root and mount(8)"
                ));
                None
            }
        }
    }

    #[allow(dead_code)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the file system to the last byte with a file, and returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.path.join("filler");
        let mut file = fs::File::create(&path).expect("create filler");
        for chunk in [64 * 1024, 4096, 1] {
            let bytes = vec![0xA5; chunk];
            let err = loop {
                if let Err(e) = file.write_all(&bytes) {
                    break e;
                }
            };
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::StorageFull,
                "filling: {err}"
            );
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still has a file open there: detach it, so the directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Prints why a test is skipped; under `CI=true` fails instead.
fn skip_unless_ci(why: String) {
    assert!(std::env::var_os("CI").is_none(), "{why}");
    eprintln!("{why}");
}
