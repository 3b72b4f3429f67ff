//! One client per store file. The engine numbers new entries from blocks it reserved in the
//! file and sends them without reading them back, so a second client on the same file would
//! both send the other's entries and miss some of its own; it is refused at open instead,
//! with an error that says why.
//!
//! The mark is an advisory lock on a file beside the store (`<store>-lock`), which the
//! operating system releases when the process ends, however it ends: a client killed with
//! SIGKILL never leaves a store locked. A sidecar file, not the database itself, because
//! SQLite's own locks on the database must not meet these on any platform.

use std::{
    ffi::OsString,
    fs::{File, OpenOptions, TryLockError},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::error::StoreError;

/// How long an open waits for the previous owner to let go: a client dropped without
/// `close()` releases the file when its store thread ends, a moment later.
const WAIT: Duration = Duration::from_secs(5);

/// How often the lock is tried meanwhile. The operating system offers no wake-up for a lock
/// released by another process short of blocking a thread on it.
const RETRY: Duration = Duration::from_millis(10);

/// Held while a client has the store open; dropping it lets the next client in.
#[derive(Debug)]
pub(super) struct Owner {
    _file: File,
}

/// The sidecar lock file of the store at `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push("-lock");
    PathBuf::from(name)
}

impl Owner {
    /// Takes the store at `path` for this client, waiting up to [`WAIT`] for another to
    /// release it.
    pub(super) fn take(path: &Path) -> Result<Owner, StoreError> {
        let lock = lock_path(path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", lock.display())))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Owner { _file: file }),
                Err(TryLockError::WouldBlock) if started.elapsed() < WAIT => {
                    std::thread::sleep(RETRY)
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(StoreError::Io(format!(
                        "the store {} is open in another client (in this process or \
                         another); give each client its own store file",
                        path.display()
                    )));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(StoreError::Io(format!(
                        "cannot lock {}: {e}",
                        lock.display()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_waits_for_the_first_and_is_refused_while_it_holds_the_store() {
        let dir = std::env::temp_dir().join(format!("pulselink-owner-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("outbox.db");
        let first = Owner::take(&store).unwrap();
        let refused = Owner::take(&store).unwrap_err();
        assert!(
            refused.to_string().contains("open in another client"),
            "{refused}"
        );
        // Released on drop: the next client gets it, also while the first is letting go.
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
        });
        let second = Owner::take(&store);
        releaser.join().unwrap();
        assert!(second.is_ok(), "{second:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
