//! The apply lock `.itsup/apply.lock`: one apply at a time per root. An advisory `flock` held by
//! the process (released by the kernel if it dies, so no stale lock is ever left behind); the
//! holder's pid is written into the file to name it in the message of the one that waits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct ApplyLock {
    file: File,
}

impl ApplyLock {
    /// Takes the lock, waiting up to `wait` for another apply to finish. `on_wait` is called
    /// once with the holder's pid when the lock is busy.
    pub fn acquire(
        root: &Path,
        wait: Duration,
        mut on_wait: impl FnMut(&str),
    ) -> anyhow::Result<ApplyLock> {
        let dir = root.join(".itsup");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("apply.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let start = Instant::now();
        let mut told = false;
        loop {
            if file.try_lock().is_ok() {
                file.set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|_| write!(file, "{}", std::process::id()))
                    .and_then(|()| file.flush())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(ApplyLock { file });
            }
            let mut holder = String::new();
            let _ = file.rewind().and_then(|_| file.read_to_string(&mut holder));
            let holder = if holder.trim().is_empty() {
                "unknown".to_string()
            } else {
                holder.trim().to_string()
            };
            if start.elapsed() >= wait {
                anyhow::bail!(
                    "another itsup apply (pid {holder}) holds {}; waited {}s (raise --lock-timeout to wait longer)",
                    path.display(),
                    wait.as_secs()
                );
            }
            if !told {
                on_wait(&holder);
                told = true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_then_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ApplyLock::acquire(dir.path(), Duration::ZERO, |_| {}).expect("first");
        let mut waited = None;
        let err = ApplyLock::acquire(dir.path(), Duration::from_millis(300), |pid| {
            waited = Some(pid.to_string())
        })
        .expect_err("second must not get the lock");
        assert!(err.to_string().contains("another itsup apply"), "{err}");
        assert_eq!(waited, Some(std::process::id().to_string()));
        drop(first);
        assert!(ApplyLock::acquire(dir.path(), Duration::ZERO, |_| {}).is_ok());
    }
}
