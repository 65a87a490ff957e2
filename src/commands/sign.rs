//! `sshjit sign` and `sshjit verify`: publishing a signed policy in one
//! step. Signing is `ssh-keygen -Y sign -n sshjit-policy` (so keys in an
//! agent and hardware keys work as they do for ssh), fed the exact bytes
//! that were validated; the result is checked against allowed_signers
//! before `<file>.sig` is replaced, so a signature that hosts would refuse
//! is never published.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ssh_key::{HashAlg, SshSig};

use super::Failure;
use crate::config::{self, Config};
use crate::fs::atomic;
use crate::fs::secure as file;
use crate::load::{Ask, Setup};
use crate::source::https::MAX_SIGNATURE_BYTES;
use crate::source::{self, Source};
use crate::{Globals, term};
use sshjit_policy::openssh::allowed_signers::{AllowedSigners, NAMESPACE, Signer};
use sshjit_policy::time::Timestamp;
use sshjit_policy::{MAX_DOCUMENT_BYTES, Policy};

pub struct SignArgs {
    pub file: PathBuf,
    pub key: PathBuf,
    pub allowed_signers: Option<PathBuf>,
}

pub struct VerifyArgs {
    pub source: Option<String>,
    pub signature: Option<PathBuf>,
    pub allowed_signers: Option<PathBuf>,
}

/// The signature file beside a policy file.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut s: OsString = file.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

pub fn run_sign(globals: &Globals, args: &SignArgs) -> u8 {
    match sign(globals, args) {
        Ok(report) => term::print(&report),
        Err(failure) => failure.report(),
    }
}

fn sign(globals: &Globals, args: &SignArgs) -> Result<String, Failure> {
    let config = config::load(globals.config.as_deref()).map_err(refused)?;
    let signers = signers(&config, args.allowed_signers.as_deref())?;
    let bytes = file::read_secure(&args.file, MAX_DOCUMENT_BYTES).map_err(refused)?;
    let policy = Policy::parse(&bytes).map_err(|e| {
        let e = file::shown(&args.file, e);
        refused(format!(
            "{}: {e}; run `sshjit check` for details",
            args.file.display()
        ))
    })?;
    let serial = policy.serial.ok_or_else(|| {
        refused(format!(
            "{}: no \"serial\": hosts refuse signed documents without one (rollback protection)",
            args.file.display()
        ))
    })?;
    // One serial, one content: hosts accept a serial again (a filtering
    // server answers parts of one version under it), so two documents
    // signed under one serial could be swapped for each other.
    let ledger = Ledger::read(&args.file)?;
    let sha = crate::store::trail::sha256_hex(&bytes);
    ledger.check(serial, &sha)?;
    let armored = sign_bytes(&bytes, &args.key)?;
    let signer = match &signers {
        Some(s) => s
            .verify(&bytes, &armored, Timestamp::now().unix_seconds())
            .map_err(|e| {
                refused(format!(
                    "{e}; hosts using {} would refuse this signature, so {} was not written",
                    s.origin(),
                    signature_path(&args.file).display()
                ))
            })?,
        None => self_check(&bytes, &armored)?,
    };
    // The file must still be what was validated and signed.
    let again = file::read_secure(&args.file, MAX_DOCUMENT_BYTES).map_err(refused)?;
    if again != bytes {
        return Err(refused(format!(
            "{} changed while it was being signed; nothing written, sign again",
            args.file.display()
        )));
    }
    let sig_path = signature_path(&args.file);
    // The record first: a signature is never out without it.
    ledger.record(serial, &sha)?;
    atomic::write(&sig_path, &armored, atomic::Options::mode(0o644))
        .map_err(|e| Failure::refused(e.to_string()))?;
    use ssh_encoding::base64::{Base64, Encoding};
    let mut report = format!(
        "signed {} (serial {serial}) as {} ({}); wrote {}\n",
        args.file.display(),
        signer.principals,
        signer.fingerprint,
        sig_path.display()
    );
    if signers.is_none() {
        report.push_str(
            "warning: no allowed_signers given or configured: check that hosts list this key\n",
        );
    }
    // This host's own signed policy (a configured source, or one indexed
    // before): its index records the new signature, so logins use it.
    let is_source = config
        .sources
        .iter()
        .any(|s| matches!(s, Source::File(p) if p == &args.file));
    let indexed =
        std::fs::canonicalize(&args.file).is_ok_and(|c| crate::index::index_path(&c).exists());
    if let Some(s) = signers.as_ref().filter(|_| is_source || indexed) {
        match super::index::rebuild(&args.file, Some(s)) {
            Ok(w) => report.push_str(&super::index::written(&args.file, &w)),
            Err(e) => report.push_str(&format!(
                "note: the index was not rebuilt ({e}): run `sshjit index`\n"
            )),
        }
    }
    report.push_str(&format!(
        "publish both files side by side, or serve the document with the header\nSshjit-Signature: {}\n",
        Base64::encode_string(&armored)
    ));
    Ok(report)
}

/// What `sign` signed for a file, by serial: `<file>.signed`, one line
/// per serial, `SERIAL SHA256`, kept beside the signature.
struct Ledger {
    path: PathBuf,
    entries: Vec<(u64, String)>,
}

/// Serials remembered (the oldest are dropped beyond this).
const LEDGER_ENTRIES: usize = 10_000;

impl Ledger {
    fn path_of(file: &Path) -> PathBuf {
        let mut s: OsString = file.as_os_str().to_owned();
        s.push(".signed");
        PathBuf::from(s)
    }

    fn read(file: &Path) -> Result<Ledger, Failure> {
        let path = Ledger::path_of(file);
        let bytes = match file::read_secure(&path, 2 << 20) {
            Ok(b) => b,
            Err(file::FileError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(refused(e)),
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| refused(format!("{}: not a sign record", path.display())))?;
        let entries = text
            .lines()
            .map(|l| {
                let (serial, sha) = l.split_once(' ')?;
                let ok = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
                Some((serial.parse().ok()?, sha.to_owned())).filter(|_| ok)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                refused(format!(
                    "{}: not a sign record (lines of `SERIAL SHA256`); move it aside only if you know every serial it names is retired",
                    path.display()
                ))
            })?;
        Ok(Ledger { path, entries })
    }

    /// Refuses a serial already signed for other content.
    fn check(&self, serial: u64, sha: &str) -> Result<(), Failure> {
        match self.entries.iter().find(|(s, h)| *s == serial && h != sha) {
            None => Ok(()),
            Some((_, other)) => Err(refused(format!(
                "serial {serial} was already signed for other content (sha256 {}..., recorded in {}): hosts accept a serial again, so either document could be replayed for the other; raise the serial (edit \"serial\", or make changes with the admin commands, which raise it) and sign again",
                &other[..16],
                self.path.display()
            ))),
        }
    }

    fn record(&self, serial: u64, sha: &str) -> Result<(), Failure> {
        if self.entries.iter().any(|(s, h)| *s == serial && h == sha) {
            return Ok(());
        }
        let keep = self.entries.len().saturating_sub(LEDGER_ENTRIES - 1);
        let mut text = String::new();
        for (s, h) in self.entries[keep..]
            .iter()
            .chain([(serial, sha.to_owned())].iter())
        {
            text.push_str(&format!("{s} {h}\n"));
        }
        atomic::write(&self.path, text.as_bytes(), atomic::Options::mode(0o644))
            .map_err(|e| Failure::refused(e.to_string()))
    }
}

fn refused(e: impl std::fmt::Display) -> Failure {
    Failure::refused(e.to_string())
}

/// allowed_signers from the flag, else the config, if any.
fn signers(config: &Config, flag: Option<&Path>) -> Result<Option<AllowedSigners>, Failure> {
    flag.or(config.fetch.allowed_signers.as_deref())
        .map(|p| crate::source::signature::load(p).map_err(|e| Failure::refused(e.to_string())))
        .transpose()
}

/// Runs `ssh-keygen -Y sign` on `bytes` (stdin to stdout); its prompts
/// (passphrase, touch) reach the terminal.
fn sign_bytes(bytes: &[u8], key: &Path) -> Result<Vec<u8>, Failure> {
    ssh_keygen_sign(bytes, key, NAMESPACE)
}

/// `ssh-keygen -Y sign -n NAMESPACE -f KEY` over `bytes`: KEY is a private
/// key, or a public key whose private half is in ssh-agent.
pub(crate) fn ssh_keygen_sign(
    bytes: &[u8],
    key: &Path,
    namespace: &str,
) -> Result<Vec<u8>, Failure> {
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            refused(format!(
                "cannot run ssh-keygen (Debian package openssh-client): {e}"
            ))
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Feed stdin from a thread: ssh-keygen may write before it has read all.
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let r = stdin.write_all(&input);
        drop(stdin);
        r
    });
    let out = child
        .wait_with_output()
        .map_err(|e| refused(format!("ssh-keygen: {e}")))?;
    let fed = writer
        .join()
        .map_err(|_| refused("ssh-keygen: input thread failed"))?;
    if !out.status.success() {
        return Err(refused(format!(
            "ssh-keygen -Y sign -f {} failed ({}); is it the private key, or a public key whose private half is in the agent?",
            key.display(),
            out.status
        )));
    }
    fed.map_err(|e| refused(format!("ssh-keygen: writing the document: {e}")))?;
    if out.stdout.is_empty() || out.stdout.len() > MAX_SIGNATURE_BYTES {
        return Err(refused("ssh-keygen gave no usable signature"));
    }
    Ok(out.stdout)
}

/// Without allowed_signers: at least check the signature is good for its
/// own key and namespace.
fn self_check(bytes: &[u8], armored: &[u8]) -> Result<Signer, Failure> {
    let sig = SshSig::from_pem(armored).map_err(|e| refused(format!("ssh-keygen output: {e}")))?;
    let key = ssh_key::PublicKey::from(sig.public_key().clone());
    key.verify(NAMESPACE, bytes, &sig).map_err(|e| {
        refused(format!(
            "ssh-keygen produced a signature that does not verify: {e}"
        ))
    })?;
    Ok(Signer {
        principals: "(not checked against allowed_signers)".into(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

pub fn run_verify(globals: &Globals, args: &VerifyArgs) -> u8 {
    match verify(globals, args) {
        Ok(report) => term::print(&report),
        Err(failure) => failure.report(),
    }
}

fn verify(globals: &Globals, args: &VerifyArgs) -> Result<String, Failure> {
    let denied = Failure::refused;
    let mut config = config::load(globals.config.as_deref()).map_err(|e| denied(e.to_string()))?;
    if let Some(p) = &args.allowed_signers {
        config.fetch.allowed_signers = Some(p.clone());
    }
    if config.fetch.allowed_signers.is_none() {
        return Err(Failure::usage(
            "no allowed_signers: give --allowed-signers FILE or set it in the config",
        ));
    }
    let sources = match &args.source {
        Some(s) => vec![Source::parse(s).map_err(|e| Failure::usage(e.to_string()))?],
        None => crate::sources(globals, &config).map_err(|e| Failure::usage(e.to_string()))?,
    };
    match (&args.signature, &sources[..]) {
        (Some(sig), [Source::File(doc)]) => {
            let bytes =
                file::read_secure(doc, MAX_DOCUMENT_BYTES).map_err(|e| denied(e.to_string()))?;
            let armored =
                file::read_secure(sig, MAX_SIGNATURE_BYTES).map_err(|e| denied(e.to_string()))?;
            let signers = signers(&config, None)?.expect("checked above");
            let signer = signers
                .verify(&bytes, &armored, Timestamp::now().unix_seconds())
                .map_err(|e| denied(format!("{}: {e}", doc.display())))?;
            finish(
                &config,
                &doc.display().to_string(),
                Some(doc),
                &bytes,
                &signer,
            )
        }
        (Some(_), _) => Err(Failure::usage("--signature goes with one policy file")),
        (None, _) => {
            let host = crate::host_name(globals, &config).ok();
            let setup = Setup {
                config,
                sources,
                host,
            };
            let fetch = setup
                .fetch(Ask::read_only(None))
                .map_err(|e| Failure::refused(e.to_string()))?;
            let fetched = fetch.fetched;
            let signer = fetched.signer.clone().expect("signatures are required");
            finish(
                &setup.config,
                &fetched.doc.origin,
                fetched.doc.path.as_deref(),
                &fetched.doc.bytes,
                &signer,
            )
        }
    }
}

/// Validates the document and reports its serial against this host's.
fn finish(
    config: &Config,
    origin: &str,
    path: Option<&Path>,
    bytes: &[u8],
    signer: &Signer,
) -> Result<String, Failure> {
    let policy = Policy::parse(bytes).map_err(|e| {
        let e = match path {
            Some(p) => file::shown(p, e),
            None => e,
        };
        Failure::refused(format!(
            "{origin}: good signature but invalid document: {e}"
        ))
    })?;
    let serial = policy.serial.ok_or_else(|| {
        Failure::refused(format!(
            "{origin}: good signature but no \"serial\": hosts refuse it"
        ))
    })?;
    let mut out = format!(
        "ok: {origin}: good signature by {} ({}), serial {serial}\n",
        signer.principals, signer.fingerprint
    );
    match source::private::PrivateDir::open(&config.fetch.state_dir, "state_dir")
        .map_err(|e| e.to_string())
        .and_then(|d| source::rollback::highest(&d).map_err(|e| e.to_string()))
    {
        Ok(Some(h)) if serial < h => {
            return Err(Failure::refused(format!(
                "{origin}: serial {serial} is lower than {h}, the highest this host accepted: it would be refused as a rollback"
            )));
        }
        Ok(Some(h)) => out.push_str(&format!("this host has accepted serial {h} so far\n")),
        Ok(None) => out.push_str("this host has accepted no serial yet\n"),
        Err(e) => out.push_str(&format!("(this host's state not checked: {e})\n")),
    }
    Ok(out)
}
