//! The server's two keys, both files readable by the server only: the
//! signing key every answer is signed with (an OpenSSH Ed25519 key; hosts
//! list its public half in `allowed_signers`), and the secrets key that
//! seals what the store must keep but not show (TOTP seeds), so a copy of
//! the database alone does not reveal them. Both are made on first start
//! when absent; replicas share them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ssh_encoding::base64::{Base64, Encoding};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

/// The namespace answers are signed in (the helper requires it).
pub const NAMESPACE: &str = sshjit_policy::openssh::allowed_signers::NAMESPACE;
const MAX_KEY_FILE: usize = 64 * 1024;

/// Why a key could not be had.
#[derive(Debug)]
pub struct KeyError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for KeyError {}

fn key_error(path: &Path, message: impl Into<String>) -> KeyError {
    KeyError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads a key file, refusing one that others could read or change.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(key_error(path, e.to_string())),
    };
    if !meta.is_file() {
        return Err(key_error(path, "not a regular file"));
    }
    let me = sshjit::system::euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(key_error(
            path,
            format!(
                "owned by uid {}, not root or the server's account",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(key_error(
            path,
            format!(
                "readable or writable by others (mode {:04o}): chmod 0600 {}",
                meta.mode() & 0o7777,
                path.display()
            ),
        ));
    }
    if meta.len() > MAX_KEY_FILE as u64 {
        return Err(key_error(path, "larger than a key file"));
    }
    fs::read(path)
        .map(Some)
        .map_err(|e| key_error(path, e.to_string()))
}

/// Writes a new key file, 0600, never over an existing one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| key_error(path, e.to_string()))?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| key_error(path, format!("cannot create: {e}")))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(|e| key_error(path, e.to_string()))
}

/// Signs answers.
pub struct Signer {
    key: PrivateKey,
}

impl Signer {
    /// Loads the signing key, or makes an Ed25519 one (and its `.pub`)
    /// when there is none. Returns whether it was made.
    pub fn load_or_create(path: &Path) -> Result<(Signer, bool), KeyError> {
        if let Some(bytes) = read_private(path)? {
            let key = PrivateKey::from_openssh(&bytes)
                .map_err(|e| key_error(path, format!("not an OpenSSH private key: {e}")))?;
            if key.is_encrypted() {
                return Err(key_error(path, "encrypted: the server signs unattended"));
            }
            return Ok((Signer { key }, false));
        }
        let key = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| key_error(path, e.to_string()))?;
        let text = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| key_error(path, e.to_string()))?;
        write_private(path, text.as_bytes())?;
        let signer = Signer { key };
        let public = path.with_extension("pub");
        let _ = fs::write(&public, format!("{}\n", signer.public_line()));
        Ok((signer, true))
    }

    /// The public key, `ssh-ed25519 AAAA... sshjit-server`.
    pub fn public_line(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("sshjit-server");
        public.to_openssh().unwrap_or_default()
    }

    /// The line hosts put in `allowed_signers`.
    pub fn allowed_signers_line(&self) -> String {
        let public = self.key.public_key().to_openssh().unwrap_or_default();
        format!("sshjit-server namespaces=\"{NAMESPACE}\" {public}")
    }

    /// The armored signature of `bytes`, base64-encoded for a header.
    pub fn sign_header(&self, bytes: &[u8]) -> Result<String, String> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, bytes)
            .map_err(|e| format!("signing: {e}"))?;
        let armored = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| format!("signing: {e}"))?;
        Ok(Base64::encode_string(armored.as_bytes()))
    }
}

/// Seals secrets the store keeps (ChaCha20-Poly1305, a random nonce per
/// seal, the owner's name as associated data so a sealed value cannot be
/// moved to another row).
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn load_or_create(path: &Path) -> Result<Sealer, KeyError> {
        let bytes = match read_private(path)? {
            Some(b) => b,
            None => {
                let mut k = [0u8; 32];
                getrandom::getrandom(&mut k).map_err(|e| key_error(path, e.to_string()))?;
                write_private(path, &k)?;
                k.to_vec()
            }
        };
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| key_error(path, "not a 32-byte key"))?;
        Ok(Sealer {
            key: LessSafeKey::new(key),
        })
    }

    pub fn seal(&self, owner: &str, secret: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| e.to_string())?;
        let mut data = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(owner.as_bytes()),
                &mut data,
            )
            .map_err(|_| "sealing failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(Base64::encode_string(&out))
    }

    pub fn open(&self, owner: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = Base64::decode_vec(sealed).map_err(|_| "not a sealed value".to_owned())?;
        if bytes.len() < NONCE_LEN {
            return Err("not a sealed value".into());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_owned())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut data)
            .map_err(|_| "cannot open a sealed value (another key, or another owner)".to_owned())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("sshjit-server-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_made_key_signs_what_allowed_signers_accepts() {
        let d = dir("sign");
        let (signer, made) = Signer::load_or_create(&d.join("signing_key")).unwrap();
        assert!(made);
        let (again, made) = Signer::load_or_create(&d.join("signing_key")).unwrap();
        assert!(!made);
        assert_eq!(signer.public_line(), again.public_line());
        let body = b"{\"version\":1}\n";
        let armored = Base64::decode_vec(&signer.sign_header(body).unwrap()).unwrap();
        let signers = sshjit_policy::openssh::allowed_signers::AllowedSigners::parse(
            "test",
            &signer.allowed_signers_line(),
            &sshjit_policy::openssh::local_time::Fixed(0),
        )
        .unwrap();
        signers.verify(body, &armored, 0).unwrap();
        assert!(signers.verify(b"{\"version\":2}\n", &armored, 0).is_err());
        fs::set_permissions(d.join("signing_key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Signer::load_or_create(&d.join("signing_key")).is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_key() {
        let d = dir("seal");
        let s = Sealer::load_or_create(&d.join("secrets_key")).unwrap();
        let sealed = s.seal("alice", b"JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(s.open("alice", &sealed).unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(s.open("bob", &sealed).is_err());
        assert_ne!(sealed, s.seal("alice", b"JBSWY3DPEHPK3PXP").unwrap());
        let other = Sealer::load_or_create(&d.join("other_key")).unwrap();
        assert!(other.open("alice", &sealed).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
