//! Test backend for the `itsup watch` integration tests, packed into a local image by
//! `.ci/images/watch-testsrv.sh` (no registry is reachable there).
//!
//! `watch_testsrv http PORT` answers every HTTP request with `$REPLY` (default: the hostname,
//! so replicas tell themselves apart); `watch_testsrv tls PORT` accepts TLS with a self-signed
//! certificate, writes `$REPLY` and then echoes lines; `health` exits non-zero once `sick` has
//! run (until `well`), which is how a test turns a container unhealthy (the image has no shell).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

const SICK_FLAG: &str = "/tmp/sick";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port = args
        .get(2)
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(8080);
    let reply = std::env::var("REPLY").unwrap_or_else(|_| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "testsrv".into())
    });
    let code = match args.get(1).map(String::as_str) {
        Some("http") => serve(port, move |s| http(s, &reply)),
        Some("tls") => match tls_config() {
            Ok(config) => serve(port, move |s| tls(s, &reply, config.clone())),
            Err(e) => {
                eprintln!("tls setup: {e}");
                1
            }
        },
        Some("health") => i32::from(std::path::Path::new(SICK_FLAG).exists()),
        Some("sick") => i32::from(std::fs::write(SICK_FLAG, b"1").is_err()),
        Some("well") => i32::from(std::fs::remove_file(SICK_FLAG).is_err()),
        _ => {
            eprintln!("usage: watch_testsrv http|tls PORT | health | sick | well");
            2
        }
    };
    std::process::exit(code);
}

fn serve(port: u16, handle: impl Fn(TcpStream) + Send + Clone + 'static) -> i32 {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bind {port}: {e}");
            return 1;
        }
    };
    for stream in listener.incoming().flatten() {
        let handle = handle.clone();
        std::thread::spawn(move || handle(stream));
    }
    0
}

fn http(stream: TcpStream, reply: &str) {
    let mut reader = BufReader::new(stream);
    loop {
        // Read one request head; bodies are not expected from the tests' GETs.
        let mut head_done = false;
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                head_done = true;
                break;
            }
            line.clear();
        }
        if !head_done {
            return;
        }
        let body = format!("{reply}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn tls_config() -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    let certified = rcgen::generate_simple_self_signed(vec!["testsrv".to_string()])?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)?;
    Ok(Arc::new(config))
}

fn tls(stream: TcpStream, reply: &str, config: Arc<rustls::ServerConfig>) {
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    let sni = tls.conn.server_name().unwrap_or("-").to_string();
    if tls
        .write_all(format!("{reply} sni={sni}\n").as_bytes())
        .and_then(|()| tls.flush())
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
        }
    }
}
