//! A real TLS (or plain loopback HTTP) server on 127.0.0.1 for the https
//! source's tests, with certificates made at test time and behaviour that
//! can be switched while it runs: serve routes, hang, trickle, fail with a
//! status, send garbage or far too much. It records every request.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TestDir;

/// How the server answers, settable at any time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from the routes (404 for unknown paths).
    Serve,
    /// Accept the TCP connection and never say anything (no TLS handshake).
    Hang,
    /// Complete the TLS handshake, read the request, never answer.
    HangAfterRequest,
    /// Send the headers of a 200, then the body one byte per second.
    Trickle,
    /// Answer every request with this status and a short body.
    Status(u16),
    /// A 200 whose body is not a policy document.
    Garbage,
    /// A 200 without Content-Length streaming this many bytes.
    Oversized(u64),
    /// A 200 that declares this Content-Length (and sends a little).
    DeclaredLength(u64),
    /// Bytes that are not HTTP at all.
    NotHttp,
}

/// A canned answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A test certificate authority and the certificates it issues.
pub struct Pki {
    pub ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server (or client) certificate with its key, both PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost, valid now.
    pub fn server(&self) -> Identity {
        self.issue(&["127.0.0.1", "localhost"], false, false)
    }

    /// A server certificate that expired long ago.
    pub fn expired_server(&self) -> Identity {
        self.issue(&["127.0.0.1", "localhost"], false, true)
    }

    /// A client certificate.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(&[name], true, false)
    }

    fn issue(&self, names: &[&str], client: bool, expired: bool) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "sshjit test");
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Options for starting a server.
pub struct ServerOptions {
    /// None: plain HTTP.
    pub identity: Option<Identity>,
    /// Require a client certificate issued by this CA (PEM).
    pub client_ca: Option<String>,
}

struct State {
    behaviour: Behaviour,
    routes: HashMap<String, Response>,
    seen: Vec<Seen>,
}

/// A running server; stops when dropped.
pub struct Server {
    pub port: u16,
    tls: bool,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// A TLS server with a certificate from `pki`.
    pub fn start(pki: &Pki) -> Self {
        Self::start_with(ServerOptions {
            identity: Some(pki.server()),
            client_ca: None,
        })
    }

    pub fn start_with(opts: ServerOptions) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls_config = opts.identity.as_ref().map(|id| {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            let builder = rustls::ServerConfig::builder();
            let builder = match &opts.client_ca {
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                        roots.add(c.unwrap()).unwrap();
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                        .build()
                        .unwrap();
                    builder.with_client_cert_verifier(verifier)
                }
                None => builder.with_no_client_auth(),
            };
            Arc::new(builder.with_single_cert(chain, key).unwrap())
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Serve,
            routes: HashMap::new(),
            seen: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp, tls) = (Arc::clone(&st), Arc::clone(&sp), tls_config.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, tls, &st, &sp);
                });
            }
        });
        Server {
            port,
            tls: opts.identity.is_some(),
            state,
            stop,
        }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    pub fn route(&self, path: &str, response: Response) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), response);
    }

    pub fn unroute(&self, path: &str) {
        self.state.lock().unwrap().routes.remove(path);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A port on which nothing listens (connections are refused).
pub fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An ed25519 signing key made with ssh-keygen.
pub struct SignKey {
    pub private: PathBuf,
    pub public_line: String,
}

pub fn signing_key(dir: &TestDir, name: &str) -> SignKey {
    let private = dir.join(name);
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .status()
        .unwrap();
    assert!(st.success());
    let public_line = fs::read_to_string(private.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned();
    SignKey {
        private,
        public_line,
    }
}

/// `ssh-keygen -Y sign -n namespace` over exactly `bytes`.
pub fn ssh_sign(key: &SignKey, bytes: &[u8], namespace: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(&key.private)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

pub fn header_value(armored: &str) -> String {
    use ssh_encoding::base64::{Base64, Encoding};
    Base64::encode_string(armored.as_bytes())
}

/// Writes a PEM string to a file readable by everyone (certificates).
pub fn write_pem(path: &Path, pem: &str) {
    super::write_file(path, pem.as_bytes(), 0o644);
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn handle(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: &Mutex<State>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let behaviour = state.lock().unwrap().behaviour.clone();
    if behaviour == Behaviour::Hang {
        // Hold the connection open until the client gives up.
        let mut buf = [0u8; 1024];
        let mut t = tcp;
        t.set_read_timeout(Some(Duration::from_secs(30)))?;
        while !stop.load(Ordering::SeqCst) {
            match t.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        return Ok(());
    }
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let raw = tcp.try_clone()?;
    let mut stream: Box<dyn Stream> = match tls {
        Some(cfg) => {
            let conn = rustls::ServerConnection::new(cfg).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let Some(seen) = read_request(&mut stream)? else {
        return Ok(());
    };
    let route = {
        let mut st = state.lock().unwrap();
        st.seen.push(seen.clone());
        st.routes.get(&seen.path).cloned()
    };
    match behaviour {
        Behaviour::Serve => match route {
            Some(r) => respond(&mut stream, &r)?,
            None => respond(
                &mut stream,
                &Response {
                    status: 404,
                    headers: vec![],
                    body: b"not found\n".to_vec(),
                },
            )?,
        },
        Behaviour::Hang => unreachable!(),
        Behaviour::HangAfterRequest => {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        Behaviour::Trickle => {
            let body = route.map(|r| r.body).unwrap_or_else(|| b"{}".to_vec());
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            stream.flush()?;
            for b in body {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
                stream.write_all(&[b])?;
                stream.flush()?;
            }
        }
        Behaviour::Status(s) => respond(
            &mut stream,
            &Response {
                status: s,
                headers: vec![],
                body: format!("status {s}\n").into_bytes(),
            },
        )?,
        Behaviour::Garbage => respond(&mut stream, &Response::ok(&b"<html>surprise</html>"[..]))?,
        Behaviour::Oversized(n) => {
            stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0u64;
            while sent < n && !stop.load(Ordering::SeqCst) {
                stream.write_all(&chunk)?;
                sent += chunk.len() as u64;
            }
        }
        Behaviour::DeclaredLength(n) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{{"
            )?;
            stream.flush()?;
        }
        Behaviour::NotHttp => {
            stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02garbage\r\n\r\n")?;
        }
    }
    stream.flush()?;
    drop(stream);
    let _ = raw.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads the request head (bounded); `None` when the client went away.
fn read_request(stream: &mut Box<dyn Stream>) -> io::Result<Option<Seen>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => n,
        };
        head.extend_from_slice(&buf[..n]);
        if head.len() > 64 * 1024 {
            return Ok(None);
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Some(Seen {
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
    }))
}

fn respond(stream: &mut Box<dyn Stream>, r: &Response) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (n, v) in &r.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}
