//! The user CA (`user_ca_key` in server.toml): signs the short-lived user
//! certificates that approved requests with `issue = "certificate"` get.
//! A certificate's key ID is its request's id and its serial is unique in
//! the store (the number of the trail record that issued it), so
//! `sshjit revoke --key-id` / `--serial` and `sshjit done` stop it at the
//! next login. Its one principal is `REQUESTER@REQUEST-ID`: it names the
//! requester, and only the request's own principal grant lets it in, so a
//! host trusting the CA without sshjit's principals helper admits nobody
//! with it, and it is good only for the request's account and hosts.

use std::path::Path;

use ssh_key::PrivateKey;
use ssh_key::certificate::{Builder, CertType};
use sshjit_policy::{AuthorizedKey, Fingerprint};

use crate::signing::{KeyError, read_private};

/// Extensions every certificate carries: a terminal, and nothing else
/// (no agent, port or X11 forwarding, no user rc).
const EXTENSIONS: &[&str] = &["permit-pty"];

pub struct UserCa {
    key: PrivateKey,
}

/// What to certify.
pub struct CertificateRequest<'a> {
    pub key: &'a AuthorizedKey<'a>,
    pub serial: u64,
    pub key_id: &'a str,
    pub principal: &'a str,
    pub valid_after: i64,
    pub valid_before: i64,
}

impl UserCa {
    pub fn load(path: &Path) -> Result<UserCa, KeyError> {
        let err = |m: String| KeyError {
            path: path.to_owned(),
            message: m,
        };
        let bytes = read_private(path)?.ok_or_else(|| err("no such file".into()))?;
        let key = PrivateKey::from_openssh(&bytes)
            .map_err(|e| err(format!("not an OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(err("encrypted: the server signs unattended".into()));
        }
        Ok(UserCa { key })
    }

    /// The line hosts put in the file `TrustedUserCAKeys` names.
    pub fn public_line(&self) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment("sshjit-user-ca");
        public.to_openssh().unwrap_or_default()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.key.public_key().key_data())
    }

    /// The certificate, as the `-cert.pub` file holds it.
    pub fn sign(&self, req: &CertificateRequest<'_>) -> Result<String, String> {
        let mut nonce = [0u8; Builder::RECOMMENDED_NONCE_SIZE];
        getrandom::getrandom(&mut nonce).map_err(|e| format!("no random bytes: {e}"))?;
        let after = u64::try_from(req.valid_after).map_err(|_| "a time before 1970")?;
        let before = u64::try_from(req.valid_before).map_err(|_| "a time before 1970")?;
        let e = |e: ssh_key::Error| format!("certificate: {e}");
        let mut b = Builder::new(nonce, req.key.key_data(), after, before).map_err(e)?;
        b.serial(req.serial).map_err(e)?;
        b.cert_type(CertType::User).map_err(e)?;
        b.key_id(req.key_id).map_err(e)?;
        b.valid_principal(req.principal).map_err(e)?;
        for x in EXTENSIONS {
            b.extension(*x, "").map_err(e)?;
        }
        b.comment(req.key_id).map_err(e)?;
        let cert = b.sign(&self.key).map_err(e)?;
        cert.to_openssh().map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::HashAlg;

    #[test]
    fn a_certificate_carries_the_request_and_verifies_against_the_ca() {
        let ca = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let ca = UserCa { key: ca };
        let user = PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
        let line = user.public_key().to_openssh().unwrap();
        let key = AuthorizedKey::parse(line).unwrap();
        let text = ca
            .sign(&CertificateRequest {
                key: &key,
                serial: 42,
                key_id: "r-20261121-abcd",
                principal: "alice@r-20261121-abcd",
                valid_after: 1_800_000_000,
                valid_before: 1_800_003_600,
            })
            .unwrap();
        let cert = ssh_key::Certificate::from_openssh(&text).unwrap();
        assert_eq!(cert.serial(), 42);
        assert_eq!(cert.key_id(), "r-20261121-abcd");
        assert_eq!(
            cert.valid_principals(),
            ["alice@r-20261121-abcd".to_owned()]
        );
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.valid_before(), 1_800_003_600);
        assert!(cert.extensions().contains_key("permit-pty"));
        assert_eq!(cert.extensions().len(), 1);
        let fp = ca.key.public_key().fingerprint(HashAlg::Sha256);
        cert.validate_at(1_800_000_100, [&fp]).unwrap();
    }
}
