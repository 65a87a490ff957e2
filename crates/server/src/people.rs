//! People and their credentials: bearer tokens (hosts' and sessions'),
//! passwords (Argon2id), TOTP codes (RFC 6238: SHA-1, 6 digits, 30 s,
//! one step either side, each step accepted once), and the rules that
//! slow guessing down (a lockout after repeated failures).

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ssh_encoding::base64::{Base64UrlUnpadded, Encoding};
use totp_rs::TOTP;

/// Failed logins in a row before a lockout.
pub const LOCK_AFTER: i64 = 5;
/// How long a lockout lasts.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// TOTP step length.
const STEP: u64 = 30;
/// Longest password accepted (Argon2 hashes anything; bound the work).
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password accepted when an account is made.
pub const MIN_PASSWORD: usize = 12;

/// A new bearer token, and the SHA-256 (hex) it is kept as.
pub fn new_token(prefix: &str) -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no random bytes: {e}"))?;
    let token = format!("{prefix}{}", Base64UrlUnpadded::encode_string(&bytes));
    let sha = token_sha256(&token);
    Ok((token, sha))
}

/// How a token is kept and looked up. Tokens carry 256 random bits, so a
/// plain SHA-256 is enough: there is nothing to guess offline.
pub fn token_sha256(token: &str) -> String {
    sshjit::store::trail::sha256_hex(token.as_bytes())
}

/// A bearer token as presented: bounded, and only the characters tokens
/// are made of.
pub fn plausible_token(token: &str) -> bool {
    (8..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn argon2() -> Argon2<'static> {
    // OWASP's first recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random bytes: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against its hash; a hash that does not parse never
/// matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash that matches nothing, verified when the person does not exist so
/// that a login for an unknown name takes as long as one for a known name.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("sshjit decoy password").unwrap_or_default())
}

/// A fresh TOTP seed (160 bits, as RFC 4226 recommends).
pub fn new_totp_secret() -> Result<Vec<u8>, String> {
    let mut s = vec![0u8; 20];
    getrandom::getrandom(&mut s).map_err(|e| format!("no random bytes: {e}"))?;
    Ok(s)
}

fn totp(secret: &[u8]) -> TOTP {
    TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, STEP, secret.to_vec())
}

/// `uri` as a QR code drawn with half-block characters, light on dark as
/// most terminals show it (with the quiet zone readers need), for an
/// authenticator app's camera. None when the URI is too long for a code.
pub fn qr_for_terminal(uri: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let code =
        qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .build(),
    )
}

/// The `otpauth://` URI an authenticator app reads (as a QR code or text).
pub fn otpauth_uri(secret: &[u8], person: &str, issuer: &str) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP}",
        enc(issuer),
        enc(person),
        totp(secret).get_secret_base32(),
        enc(issuer)
    )
}

/// The time step a code belongs to, when it is the code of the current
/// step or one either side (clocks drift); `None` otherwise. The caller
/// refuses a step at or before the last one accepted.
pub fn totp_step(secret: &[u8], code: &str, unix_now: u64) -> Option<i64> {
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret);
    let now = unix_now / STEP;
    let mut found = None;
    // Every candidate is computed, so the time taken does not tell which.
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = t.generate(step * STEP);
        if constant_time_eq(expected.as_bytes(), code.as_bytes()) {
            found = Some(step);
        }
    }
    found.and_then(|s| i64::try_from(s).ok())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The code of the step holding `unix`.
#[cfg(test)]
pub fn totp_code(secret: &[u8], unix: u64) -> String {
    totp(secret).generate(unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_qr_code_draws_exactly_the_uris_modules_light_on_dark() {
        let uri = "otpauth://totp/sshjit%20host:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=sshjit%20host";
        let drawn = qr_for_terminal(uri).unwrap();
        let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
            .unwrap();
        let (w, quiet) = (code.width(), 4);
        let side = w + 2 * quiet;
        // Back from half blocks to modules: the top half is row 2k, the
        // bottom half row 2k+1; a drawn half is a light module (the
        // terminal's light foreground), a blank one a dark module.
        let mut dark = vec![vec![false; side]; side + 1];
        let lines: Vec<&str> = drawn.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2), "{drawn}");
        for (k, line) in lines.iter().enumerate() {
            let cells: Vec<char> = line.chars().collect();
            assert_eq!(cells.len(), side, "line {k}");
            for (x, c) in cells.into_iter().enumerate() {
                let (top, bottom) = match c {
                    ' ' => (false, false),
                    '\u{2580}' => (true, false),
                    '\u{2584}' => (false, true),
                    '\u{2588}' => (true, true),
                    other => panic!("unexpected {other:?} in line {k}"),
                };
                dark[2 * k][x] = !top;
                dark[2 * k + 1][x] = !bottom;
            }
        }
        let colors = code.to_colors();
        for y in 0..side {
            for x in 0..side {
                let inside = (quiet..quiet + w).contains(&x) && (quiet..quiet + w).contains(&y);
                let want = inside && colors[(y - quiet) * w + (x - quiet)] == qrcode::Color::Dark;
                assert_eq!(dark[y][x], want, "module ({x}, {y})");
            }
        }
        assert!(qr_for_terminal(&"x".repeat(4000)).is_none());
    }

    #[test]
    fn rfc6238_test_vector() {
        // RFC 6238 appendix B, SHA-1, the last 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(totp_code(secret, 59), "287082");
        assert_eq!(totp_code(secret, 1_111_111_109), "081804");
        assert_eq!(totp_code(secret, 2_000_000_000), "279037");
    }

    #[test]
    fn a_code_is_good_for_its_step_and_one_either_side() {
        let secret = new_totp_secret().unwrap();
        let t = 1_800_000_000;
        let code = totp_code(&secret, t);
        assert_eq!(totp_step(&secret, &code, t), Some((t / 30) as i64));
        assert_eq!(totp_step(&secret, &code, t + 30), Some((t / 30) as i64));
        assert_eq!(totp_step(&secret, &code, t - 30), Some((t / 30) as i64));
        assert_eq!(totp_step(&secret, &code, t + 90), None);
        assert_eq!(totp_step(&secret, "12345", t), None);
        assert_eq!(totp_step(&secret, "12345a", t), None);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterz", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("sshjit decoy password!", decoy_hash()));
    }

    #[test]
    fn tokens_are_random_and_kept_hashed() {
        let (a, sha) = new_token("sjh_").unwrap();
        let (b, _) = new_token("sjh_").unwrap();
        assert_ne!(a, b);
        assert!(plausible_token(&a));
        assert_eq!(token_sha256(&a), sha);
        assert!(!plausible_token("short"));
        assert!(!plausible_token("sjh_has space in it"));
    }

    #[test]
    fn the_otpauth_uri_names_issuer_person_and_secret() {
        let uri = otpauth_uri(b"12345678901234567890", "alice@corp", "sshjit web-1");
        assert!(
            uri.starts_with("otpauth://totp/sshjit%20web-1:alice%40corp?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&"),
            "{uri}"
        );
    }
}
