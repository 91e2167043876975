//! The `acme` block of `itsup.yml` beyond its schema: `caServer` must be an HTTPS directory
//! URL, `caBundle` a readable PEM of certificates inside `projects/`, and both are refused with
//! an engine that has no ACME client to hand them to (haproxy; traefik and itsup have one).

use std::path::{Component, Path};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::model::{Engine, ItsupConfig};

/// A problem with one key of the `acme` block: its JSON pointer and the message.
#[derive(Debug, PartialEq)]
pub struct Problem {
    pub pointer: &'static str,
    pub message: String,
}

/// Checks the block; returns the bundle's PEM text (read once here, so the renderer never
/// reads input files) and the problems found.
pub fn check(root: &Path, config: &ItsupConfig) -> (Option<String>, Vec<Problem>) {
    let acme = &config.acme;
    let mut problems = Vec::new();
    if config.proxy.engine == Engine::Haproxy {
        for (set, pointer, key) in [
            (acme.ca_server.is_some(), "/acme/caServer", "caServer"),
            (acme.ca_bundle.is_some(), "/acme/caBundle", "caBundle"),
        ] {
            if set {
                problems.push(Problem {
                    pointer,
                    message: format!(
                        "`acme.{key}` is only honoured by engines traefik and itsup (engine {} \
                         obtains no ACME certificates: it serves the PEM files in its certs folder)",
                        config.proxy.engine.as_str()
                    ),
                });
            }
        }
        return (None, problems);
    }
    if let Some(url) = &acme.ca_server
        && let Some(p) = url_problem(url)
    {
        problems.push(Problem {
            pointer: "/acme/caServer",
            message: format!("`caServer` {url:?}: {p}"),
        });
    }
    let pem = match &acme.ca_bundle {
        Some(rel) => match read_bundle(root, rel) {
            Ok(pem) => Some(pem),
            Err(p) => {
                problems.push(Problem {
                    pointer: "/acme/caBundle",
                    message: format!("`caBundle` {rel:?}: {p}"),
                });
                None
            }
        },
        None => None,
    };
    (pem, problems)
}

/// ACME (RFC 8555) runs over HTTPS only.
fn url_problem(url: &str) -> Option<&'static str> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Some("must be an https:// URL of the ACME directory");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Some("has no host");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain spaces or control characters");
    }
    None
}

/// Reads `projects/<rel>` and checks that it holds at least one certificate and only valid ones.
fn read_bundle(root: &Path, rel: &str) -> Result<String, String> {
    let path = Path::new(rel);
    if path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("must be a path inside projects/ (relative, without `..`)".into());
    }
    let projects = root.join("projects");
    let full = projects.join(path);
    // A symlink may not lead out of projects/: the bundle is part of the reviewed tree.
    let (Ok(inside), Ok(base)) = (full.canonicalize(), projects.canonicalize()) else {
        return Err(format!("no such file: projects/{rel}"));
    };
    if !inside.starts_with(&base) {
        return Err("leads out of projects/ (symlink)".into());
    }
    let meta = std::fs::metadata(&inside).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    if meta.len() > crate::load::MAX_FILE_BYTES {
        return Err(format!(
            "is larger than {} bytes",
            crate::load::MAX_FILE_BYTES
        ));
    }
    let text = std::fs::read_to_string(&inside).map_err(|e| format!("cannot read: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for (n, cert) in CertificateDer::pem_slice_iter(text.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {} is not valid PEM: {e}", n + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} cannot be parsed: {e}", n + 1))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(engine: Engine, server: Option<&str>, bundle: Option<&str>) -> ItsupConfig {
        let mut c = ItsupConfig::default();
        c.proxy.engine = engine;
        c.acme.ca_server = server.map(str::to_string);
        c.acme.ca_bundle = bundle.map(str::to_string);
        c
    }

    fn root_with(file: &str, text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("projects").join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        dir
    }

    #[test]
    fn accepts_a_real_bundle_and_an_https_directory() {
        let key = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).expect("cert");
        let dir = root_with("ca/root.pem", &key.cert.pem());
        for engine in [Engine::Traefik, Engine::Itsup] {
            let c = config(
                engine,
                Some("https://10.0.0.1:14000/dir"),
                Some("ca/root.pem"),
            );
            let (pem, problems) = check(dir.path(), &c);
            assert_eq!(problems, vec![]);
            assert!(pem.is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
        }
    }

    #[test]
    fn names_each_bad_key() {
        let dir = root_with("ca/junk.pem", "not a certificate\n");
        let bad = |server: Option<&str>, bundle: Option<&str>| {
            check(dir.path(), &config(Engine::Traefik, server, bundle))
                .1
                .into_iter()
                .map(|p| format!("{} {}", p.pointer, p.message))
                .collect::<Vec<_>>()
        };
        assert!(bad(Some("http://ca/dir"), None)[0].contains("https:// URL"));
        assert!(bad(Some("https:///dir"), None)[0].contains("no host"));
        assert!(bad(None, Some("ca/junk.pem"))[0].contains("holds no PEM certificate"));
        assert!(bad(None, Some("ca/missing.pem"))[0].contains("no such file"));
        assert!(bad(None, Some("../secrets/x.pem"))[0].contains("inside projects/"));
        assert!(bad(None, Some("/etc/ssl/certs/ca-certificates.crt"))[0].contains("relative"));
        let other = check(
            dir.path(),
            &config(Engine::Haproxy, Some("https://ca/dir"), Some("ca/junk.pem")),
        )
        .1;
        assert_eq!(other.len(), 2);
        assert!(
            other[0]
                .message
                .contains("only honoured by engines traefik and itsup")
        );
    }
}
