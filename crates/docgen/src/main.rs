//! `sshjit-docgen OUT_DIR`: writes sshjit's man pages (`OUT_DIR/man/*.1`,
//! one per command and subcommand) and shell completions
//! (`OUT_DIR/completions/{sshjit.bash,_sshjit,sshjit.fish}`) from the very
//! clap definitions the binary parses with, so they cannot drift from it.
//! scripts/package runs it; the helper never links the generators.

use std::io;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// The binary's command line, compiled here a second time: only its clap
// definitions are used (the dispatch code is dead in this crate).
#[allow(dead_code)]
#[path = "../../../src/cli.rs"]
mod cli;

/// The `sshjit` command as clap sees it.
fn command() -> clap::Command {
    cli::Cli::command()
}

/// One man page per command: `sshjit.1`, `sshjit-grant.1`,
/// `sshjit-audit-verify.1`, ...
fn write_man(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command(), dir)
}

/// Completion scripts for bash, zsh and fish, under the names each shell's
/// vendor directory expects once installed.
fn write_completions(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (shell, name) in [
        (Shell::Bash, "sshjit.bash"),
        (Shell::Zsh, "_sshjit"),
        (Shell::Fish, "sshjit.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut command(), "sshjit", &mut text);
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: sshjit-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    let out = Path::new(out);
    match write_man(&out.join("man")).and_then(|()| write_completions(&out.join("completions"))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sshjit-docgen: {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("sshjit-docgen-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Every command path below `sshjit` (`["audit", "verify"]`, ...), with its command.
    fn every_command() -> Vec<(Vec<String>, clap::Command)> {
        fn walk(
            path: Vec<String>,
            cmd: &clap::Command,
            out: &mut Vec<(Vec<String>, clap::Command)>,
        ) {
            out.push((path.clone(), cmd.clone()));
            // clap's own `help` subcommand has no page of its own.
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                let mut p = path.clone();
                p.push(sub.get_name().to_owned());
                walk(p, sub, out);
            }
        }
        let mut cmd = command();
        cmd.build();
        let mut out = Vec::new();
        walk(Vec::new(), &cmd, &mut out);
        out
    }

    fn run(cmd: &mut Command) -> (bool, String, String) {
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("{cmd:?}: {e} (scripts/test installs bash, zsh, fish and groff when missing)")
        });
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn every_command_and_subcommand_has_a_man_page_naming_all_its_options() {
        let dir = Scratch::new("man");
        write_man(&dir.0).unwrap();
        let commands = every_command();
        assert!(
            commands.len() > 20,
            "the walk found the commands: {}",
            commands.len()
        );
        for (path, cmd) in commands {
            let name = std::iter::once("sshjit".to_owned())
                .chain(path.iter().cloned())
                .collect::<Vec<_>>()
                .join("-");
            let file = dir.0.join(format!("{name}.1"));
            let page = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("no man page {}: {e}", file.display()));
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long() {
                    let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&roff), "{name}.1 does not name --{long}");
                }
            }
            for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
                assert!(
                    page.contains(&format!("{name}-{}", sub.get_name()).replace('-', "\\-")),
                    "{name}.1 does not point to {name}-{}",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn man_pages_render_without_warnings() {
        let dir = Scratch::new("groff");
        write_man(&dir.0).unwrap();
        for entry in std::fs::read_dir(&dir.0).unwrap() {
            let path = entry.unwrap().path();
            let (ok, _, err) = run(Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&path));
            assert!(ok && err.is_empty(), "{}: {err}", path.display());
        }
    }

    #[test]
    fn bash_completes_subcommands_and_their_options() {
        let dir = Scratch::new("bash");
        write_completions(&dir.0).unwrap();
        let complete = |words: &str| {
            let script = format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
                 _sshjit sshjit \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                dir.0.join("sshjit.bash").display()
            );
            let (ok, out, err) = run(Command::new("bash").arg("-c").arg(script));
            assert!(ok, "bash: {err}");
            out.lines().map(str::to_owned).collect::<Vec<_>>()
        };
        let top = complete("sshjit ''");
        for (path, _) in every_command() {
            if let [sub] = path.as_slice() {
                assert!(top.contains(sub), "`sshjit <TAB>` lacks {sub}: {top:?}");
            }
        }
        let re = complete("sshjit re");
        assert!(
            ["revoke", "report", "reap"]
                .iter()
                .all(|w| re.contains(&(*w).to_owned())),
            "{re:?}"
        );
        let krl = complete("sshjit krl --");
        assert!(krl.contains(&"--output".to_owned()), "{krl:?}");
    }

    #[test]
    fn zsh_and_fish_accept_their_completion_scripts() {
        let dir = Scratch::new("shells");
        write_completions(&dir.0).unwrap();
        let (ok, _, err) = run(Command::new("zsh").arg("-n").arg(dir.0.join("_sshjit")));
        assert!(ok && err.is_empty(), "zsh -n: {err}");
        let (ok, _, err) = run(Command::new("fish")
            .arg("--no-execute")
            .arg(dir.0.join("sshjit.fish")));
        assert!(ok && err.is_empty(), "fish --no-execute: {err}");
        // And fish really offers the subcommands from it.
        let (ok, out, err) = run(Command::new("fish").arg("-c").arg(format!(
            "source {}; complete -C 'sshjit rev'",
            dir.0.join("sshjit.fish").display()
        )));
        assert!(ok && out.contains("revoke"), "fish: {out}{err}");
    }
}
