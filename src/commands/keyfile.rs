//! Reading the public key file given to `--key` (`grant`, `revoke`):
//! exactly one public key, and a clear refusal of private keys and of
//! formats sshd does not read.

use std::io::Read;

use super::failure::Failure;
use sshjit_policy::AuthorizedKey;

/// Largest key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Reads one public key from a file or stdin, refusing private keys.
pub fn read_key(spec: &str) -> Result<AuthorizedKey<'static>, Failure> {
    let name = if spec == "-" { "stdin" } else { spec };
    let mut bytes = Vec::new();
    let read = if spec == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(spec).and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
    };
    read.map_err(|e| Failure::usage(format!("--key {name}: {e}")))?;
    // Whatever the file holds is quoted only if anyone may read it:
    // `--key /root/secret.txt` must not print its first line (here, in
    // the syslog line, or through sudo).
    let disclose = spec == "-" || crate::fs::secure::world_readable(std::path::Path::new(spec));
    parse_key_file_as(name, &bytes, disclose)
}

/// The one public key in a key file's bytes.
pub fn parse_key_file(name: &str, bytes: &[u8]) -> Result<AuthorizedKey<'static>, Failure> {
    parse_key_file_as(name, bytes, true)
}

/// As [`parse_key_file`]; without `disclose`, a key that does not parse is
/// refused without quoting it.
fn parse_key_file_as(
    name: &str,
    bytes: &[u8],
    disclose: bool,
) -> Result<AuthorizedKey<'static>, Failure> {
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Failure::usage(format!(
            "--key {name}: larger than {MAX_KEY_FILE} bytes, not a public key file"
        )));
    }
    let text = String::from_utf8_lossy(bytes);
    if text.contains("---- BEGIN SSH2 PUBLIC KEY") {
        return Err(Failure::usage(format!(
            "--key {name}: an RFC 4716 (SSH2) public key; convert it with `ssh-keygen -i -f {name}`"
        )));
    }
    if text.contains("-----BEGIN")
        || text.contains("PRIVATE KEY")
        || text.starts_with("PuTTY-User-Key-File")
    {
        return Err(Failure::usage(format!(
            "--key {name}: this is a PRIVATE key. Give the public key instead (the .pub file, or `ssh-keygen -y -f {name}`), and keep the private key where it was"
        )));
    }
    let keys: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    match keys.as_slice() {
        [] => Err(Failure::usage(format!("--key {name}: no public key in it"))),
        [one] => AuthorizedKey::parse((*one).to_owned())
            .map(AuthorizedKey::into_owned)
            .map_err(|e| {
                Failure::usage(if disclose {
                    format!("--key {name}: {e}")
                } else {
                    format!(
                        "--key {name}: not a valid public key (the content is not shown: the file is not readable by everyone)"
                    )
                })
            }),
        many => Err(Failure::usage(format!(
            "--key {name}: holds {} keys; a grant names exactly one",
            many.len()
        ))),
    }
}
