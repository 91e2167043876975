//! The certificate store: one folder (`acme.store`) holding the ACME account per directory URL,
//! one folder per name set with its chain and key, the HTTP-01 answers in flight and the lock
//! files that let several proxies share it. Every write is atomic (temp file + rename in the
//! same folder) and skipped when the content is unchanged; key files are created 0600.
//!
//! ```text
//! <store>/accounts/<sha256(directory)[..16]>.json   account credentials (0600)
//! <store>/accounts/.lock                            held while an account is created
//! <store>/certificates/<first-name>-<hash>/cert.pem the chain, leaf first
//! <store>/certificates/<first-name>-<hash>/key.pem  its ECDSA P-256 key (0600)
//! <store>/certificates/<first-name>-<hash>/.lock    held around an order for the set
//! <store>/http-01/<token>                           key authorizations being validated
//! ```

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The store folder.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

/// An exclusive lock on a store file, across processes (`flock`); released when dropped.
#[derive(Debug)]
pub(crate) struct StoreLock {
    file: File,
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// How often a waiting proxy retries a lock another one holds.
const LOCK_POLL: Duration = Duration::from_millis(200);

impl Store {
    /// Opens the store, creating its folders (0700: it holds keys).
    pub(crate) fn open(root: &Path) -> Result<Store, StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("accounts"),
            root.join("certificates"),
            root.join("http-01"),
        ] {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err(&dir))?;
            }
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        // Fail at start, not at the first order, when the folder is read-only.
        let probe = store.root.join(".write-test");
        write_atomic(&probe, b"ok", 0o600)?;
        let _ = std::fs::remove_file(&probe);
        Ok(store)
    }

    fn account_path(&self, directory_url: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(directory_url.as_bytes()));
        self.root
            .join("accounts")
            .join(format!("{}.json", &hash[..16]))
    }

    /// The stored account credentials for a directory (JSON), if any.
    pub(crate) fn read_account(&self, directory_url: &str) -> Result<Option<String>, StoreError> {
        read_optional(&self.account_path(directory_url))
    }

    pub(crate) fn write_account(&self, directory_url: &str, json: &str) -> Result<(), StoreError> {
        write_atomic(&self.account_path(directory_url), json.as_bytes(), 0o600)
    }

    /// Forgets an account the CA no longer knows (a test CA restarted, an account deleted).
    pub(crate) fn remove_account(&self, directory_url: &str) -> Result<(), StoreError> {
        let path = self.account_path(directory_url);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// The folder of one name set: readable (first name) and unique (hash of the sorted set).
    pub(crate) fn set_dir(&self, names: &[String]) -> PathBuf {
        let mut sorted: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        sorted.sort();
        let hash = hex::encode(Sha256::digest(sorted.join(",").as_bytes()));
        let first = names
            .first()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        self.root
            .join("certificates")
            .join(format!("{first}-{}", &hash[..8]))
    }

    /// The stored chain and key PEM of a name set, if both are there.
    pub(crate) fn read_certificate(
        &self,
        names: &[String],
    ) -> Result<Option<(String, String)>, StoreError> {
        let dir = self.set_dir(names);
        let cert = read_optional(&dir.join("cert.pem"))?;
        let key = read_optional(&dir.join("key.pem"))?;
        Ok(cert.zip(key))
    }

    /// Writes a new chain and key. The key goes first: a reader that sees the new chain with
    /// the old key finds that they do not match and keeps what it had until the next look.
    pub(crate) fn write_certificate(
        &self,
        names: &[String],
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<(), StoreError> {
        let dir = self.set_dir(names);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write_atomic(&dir.join("key.pem"), key_pem.as_bytes(), 0o600)?;
        write_atomic(&dir.join("cert.pem"), chain_pem.as_bytes(), 0o644)
    }

    /// Modification time of a set's chain (a cheap "did another proxy renew it" check).
    pub(crate) fn certificate_mtime(&self, names: &[String]) -> Option<std::time::SystemTime> {
        std::fs::metadata(self.set_dir(names).join("cert.pem"))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Waits for the lock of a name set's orders.
    pub(crate) async fn lock_set(&self, names: &[String]) -> Result<StoreLock, StoreError> {
        let dir = self.set_dir(names);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        lock(&dir.join(".lock")).await
    }

    /// Waits for the lock held while an account is looked up or created.
    pub(crate) async fn lock_accounts(&self) -> Result<StoreLock, StoreError> {
        lock(&self.root.join("accounts").join(".lock")).await
    }

    fn http01_path(&self, token: &str) -> Option<PathBuf> {
        // Tokens are base64url (RFC 8555 §8.3); anything else never names a file.
        let valid = !token.is_empty()
            && token.len() <= 128
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then(|| self.root.join("http-01").join(token))
    }

    /// Publishes an HTTP-01 answer for every proxy sharing the store (the CA may ask any).
    pub(crate) fn write_http01(&self, token: &str, key_auth: &str) -> Result<(), StoreError> {
        match self.http01_path(token) {
            Some(path) => write_atomic(&path, key_auth.as_bytes(), 0o644),
            None => Err(StoreError::Invalid {
                path: self.root.join("http-01").display().to_string(),
                message: format!("`{token}` is not a base64url token"),
            }),
        }
    }

    pub(crate) fn read_http01(&self, token: &str) -> Option<String> {
        let path = self.http01_path(token)?;
        std::fs::read_to_string(path).ok()
    }

    pub(crate) fn remove_http01(&self, token: &str) {
        if let Some(path) = self.http01_path(token) {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn lock(path: &Path) -> Result<StoreLock, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StoreLock { file }),
            Err(TryLockError::WouldBlock) => tokio::time::sleep(LOCK_POLL).await,
            Err(TryLockError::Error(e)) => return Err(io_err(path)(e)),
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Writes `bytes` to `path` through a temp file in the same folder (created with `mode`, so a
/// key is never readable by others, not even for a moment), synced, then renamed over it.
/// Nothing is written when the file already holds exactly these bytes.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_0600_writes_are_atomic_and_skipped_when_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("acme")).expect("open");
        let names = vec!["www.example.com".to_string(), "example.com".to_string()];
        store
            .write_certificate(&names, "CHAIN", "KEY")
            .expect("write");
        let set = store.set_dir(&names);
        assert!(
            set.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("www.example.com-"))
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&set.join("key.pem")), 0o600);
        assert_eq!(mode(&set.join("cert.pem")), 0o644);
        assert_eq!(mode(&dir.path().join("acme")), 0o700);
        let before = store.certificate_mtime(&names).expect("mtime");
        std::thread::sleep(Duration::from_millis(20));
        store
            .write_certificate(&names, "CHAIN", "KEY")
            .expect("same again");
        assert_eq!(
            store.certificate_mtime(&names),
            Some(before),
            "not rewritten"
        );
        assert_eq!(
            store.read_certificate(&names).expect("read"),
            Some(("CHAIN".to_string(), "KEY".to_string()))
        );
        // The same set in another order is the same folder.
        let swapped = vec![names[1].clone(), names[0].clone()];
        assert_ne!(
            store.set_dir(&swapped),
            set,
            "the first name names the folder"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&set)
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "no temp files left");
    }

    #[test]
    fn tokens_that_are_not_base64url_never_name_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .write_http01("abc_DEF-123", "abc.thumb")
            .expect("write");
        assert_eq!(
            store.read_http01("abc_DEF-123").as_deref(),
            Some("abc.thumb")
        );
        assert_eq!(store.read_http01("../accounts/x"), None);
        assert!(store.write_http01("../x", "y").is_err());
        store.remove_http01("abc_DEF-123");
        assert_eq!(store.read_http01("abc_DEF-123"), None);
    }

    #[tokio::test]
    async fn a_set_lock_is_exclusive_across_handles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let names = vec!["a.example".to_string()];
        let held = store.lock_set(&names).await.expect("lock");
        let other = store.clone();
        let n = names.clone();
        let waiter = tokio::spawn(async move { other.lock_set(&n).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiter.is_finished(),
            "second lock waits while the first is held"
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("second lock after release")
            .expect("join")
            .expect("lock");
    }
}
