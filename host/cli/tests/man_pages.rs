//! The manual pages in `contrib/man/`: `mandoc -Tlint` reports nothing, and the pages of the
//! two programs name every command and option clap gives them (so a new one cannot ship
//! undocumented).

mod common;

use common::{HAVENCTL, HAVEND};
use std::path::{Path, PathBuf};
use std::process::Command;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib/man")
}

fn page(name: &str) -> String {
    std::fs::read_to_string(man_dir().join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn help(program: &str) -> String {
    let output = Command::new(program).arg("--help").output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// The long options (`--name`) in a `--help` text, but `--help` and `--version`.
fn long_options(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|word| word.trim_end_matches([',', '.', ')']).to_owned())
        .filter(|word| !word.is_empty() && word != "help" && word != "version")
        .filter(|word| word.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

#[test]
fn mandoc_lint_reports_nothing() {
    // From their folder, where mandoc finds the pages they refer to each other by.
    let output = match Command::new("mandoc")
        .arg("-Tlint")
        .args(["havend.8", "havenctl.8", "haven.toml.5"])
        .current_dir(man_dir())
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            eprintln!("skipped: mandoc is not installed (Debian's mandoc)");
            return;
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success() && said.is_empty(), "{said}");
}

#[test]
fn the_pages_name_every_command_and_option_clap_has() {
    let havenctl_help = help(HAVENCTL);
    let havenctl_page = page("havenctl.8");
    let commands: Vec<&str> = havenctl_help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|command| *command != "help")
        .collect();
    assert!(commands.len() > 10, "{havenctl_help}");
    for command in commands {
        assert!(
            havenctl_page.contains(&format!(".It Cm {command}")),
            "havenctl.8 does not describe `{command}`"
        );
        let sub = Command::new(HAVENCTL)
            .args([command, "--help"])
            .output()
            .unwrap();
        for option in long_options(&String::from_utf8_lossy(&sub.stdout)) {
            assert!(
                havenctl_page.contains(&format!("Fl -{option}")),
                "havenctl.8 does not name `{command} --{option}`"
            );
        }
    }
    for option in long_options(&havenctl_help) {
        assert!(
            havenctl_page.contains(&format!("Fl -{option}")),
            "havenctl.8 does not name `--{option}`"
        );
    }
    let havend_page = page("havend.8");
    for option in long_options(&help(HAVEND)) {
        assert!(
            havend_page.contains(&format!("Fl -{option}")),
            "havend.8 does not name `--{option}`"
        );
    }
}
