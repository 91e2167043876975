//! What the proxy needs on the host before it starts: for HAProxy the runtime folder
//! `proxy/haproxy/run/` (its sockets, reachable from the host through the directory mount) and
//! a default certificate in `proxy/haproxy/certs/` when none is there, since HAProxy refuses a
//! `crt` folder without one; for Traefik the edge's runtime folder `proxy/edge/run/`; for
//! `itsup proxy` the folder `proxy/itsup/run/` of its admin socket and its writable
//! certificate store `proxy/itsup/acme/`.

use std::path::Path;

use anyhow::Context;

use crate::model::Engine;

/// Prepares the proxy's host folders. Returns what it created, for the report.
pub fn prepare(root: &Path, engine: Engine) -> anyhow::Result<Vec<String>> {
    let mut made = Vec::new();
    let run_dir = match engine {
        Engine::Haproxy => "proxy/haproxy/run",
        Engine::Itsup => "proxy/itsup/run",
        Engine::Traefik => "proxy/edge/run",
    };
    let writable: &[&str] = match engine {
        Engine::Itsup => &[run_dir, "proxy/itsup/acme"],
        _ => &[run_dir],
    };
    for folder in writable {
        let path = root.join(folder);
        if !path.is_dir() {
            std::fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            made.push(format!("{folder}/"));
        }
    }
    if engine != Engine::Haproxy {
        return Ok(made);
    }
    let dir = root.join("proxy/haproxy");
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs)
        .with_context(|| format!("cannot create {}", certs.display()))?;
    let has_cert = std::fs::read_dir(&certs)
        .with_context(|| format!("cannot read {}", certs.display()))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "pem"));
    if !has_cert {
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .context("cannot generate the default certificate")?;
        let pem = format!("{}{}", key.cert.pem(), key.signing_key.serialize_pem());
        let path = certs.join("default.pem");
        crate::atomic::write(&path, pem.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        made.push("proxy/haproxy/certs/default.pem (self-signed)".into());
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_run_and_a_cert_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = prepare(dir.path(), Engine::Haproxy).expect("prepare");
        assert_eq!(made.len(), 2);
        let pem = std::fs::read_to_string(dir.path().join("proxy/haproxy/certs/default.pem"))
            .expect("pem");
        assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
        assert!(
            prepare(dir.path(), Engine::Haproxy)
                .expect("again")
                .is_empty()
        );
        assert_eq!(
            prepare(dir.path(), Engine::Traefik).expect("traefik"),
            vec!["proxy/edge/run/".to_string()]
        );
        assert_eq!(
            prepare(dir.path(), Engine::Itsup).expect("itsup"),
            vec![
                "proxy/itsup/run/".to_string(),
                "proxy/itsup/acme/".to_string()
            ]
        );
        assert!(dir.path().join("proxy/itsup/run").is_dir());
        assert!(dir.path().join("proxy/itsup/acme").is_dir());
    }
}
