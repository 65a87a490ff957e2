//! The `index` fuzz target's committed seeds (`fuzz/seeds/index/built-*`)
//! are the index builder's output for its policies (`fuzz/index_cases.rs`):
//! when the index format or a policy seed changes, this fails until they
//! are written again with
//! `SSHJIT_WRITE_SEEDS=1 cargo test --test it fuzz_seeds`.

use std::fs;
use std::path::Path;

#[allow(dead_code, reason = "the control block's reader is the fuzz target's")]
#[path = "../../fuzz/index_cases.rs"]
mod index_cases;

#[test]
fn index_fuzz_seeds_are_the_builders_output() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/index");
    let seeds = index_cases::seeds();
    if std::env::var_os("SSHJIT_WRITE_SEEDS").is_some() {
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("built-")
            {
                fs::remove_file(path).unwrap();
            }
        }
        for (name, bytes) in &seeds {
            fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, bytes) in &seeds {
        if fs::read(dir.join(name)).ok().as_ref() != Some(bytes) {
            stale.push(name.clone());
        }
    }
    for entry in fs::read_dir(&dir).into_iter().flatten() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("built-") && !seeds.iter().any(|(n, _)| *n == name) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz/seeds/index is not the builder's output ({stale:?}): \
         SSHJIT_WRITE_SEEDS=1 cargo test --test it fuzz_seeds"
    );
}
