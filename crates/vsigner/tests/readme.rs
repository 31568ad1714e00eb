//! The README is the front door: what it tells a newcomer to type must work. These tests read
//! README.md and check it against the real binary and the real workspace:
//! - the quick start has exactly the two set-up commands, `cargo run --release -- demo`
//!   resolves to the `vsigner` binary (no other binary in the workspace's default members
//!   competes for `cargo run`), and the demo's arguments parse;
//! - every `vsigner …` command the README shows (the commands table, the walkthrough) is a
//!   real subcommand, and every `--flag` written next to it is one of its options;
//! - every configuration key the README names is a key `vsigner run` accepts.
//!
//! `.ci/run` also runs the quick start's `cargo run` line itself (dev profile, `--help`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const VSIGNER: &str = env!("CARGO_BIN_EXE_vsigner");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The text of the section under `## heading`, up to the next `## ` heading.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no '## {heading}' section"));
    let body = &text[start + heading.len() + 5..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// The lines of the fenced code blocks of `text`.
fn code_lines(text: &str) -> Vec<&str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            inside = !inside;
        } else if inside {
            lines.push(line);
        }
    }
    lines
}

/// A command line without its trailing `# comment`.
fn without_comment(line: &str) -> &str {
    line.split(" #").next().unwrap().trim()
}

fn vsigner(args: &[&str]) -> std::process::Output {
    Command::new(VSIGNER).args(args).output().unwrap()
}

fn help_of(path: &[&str]) -> String {
    let mut args = path.to_vec();
    args.push("--help");
    let out = vsigner(&args);
    assert!(
        out.status.success(),
        "`vsigner {}` is in the README but is not a command: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_quick_start_is_the_two_set_up_commands() {
    let text = readme();
    let quick_start = section(&text, "Quick start");
    // The first code block holds the set-up commands.
    let first_block = &quick_start[..quick_start
        .match_indices("```")
        .nth(1)
        .map_or(quick_start.len(), |(i, _)| i + 3)];
    let setup: Vec<&str> = code_lines(first_block)
        .into_iter()
        .map(without_comment)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        setup,
        ["cargo run --release -- demo", "bash .ci/run"],
        "the README's quick start must be exactly the two set-up commands"
    );
    assert!(root().join(".ci/run").is_file(), ".ci/run is missing");
}

#[test]
fn cargo_run_resolves_to_the_vsigner_binary() {
    // What `cargo run` picks from: the binaries of the workspace's default members.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let defaults: BTreeSet<&str> = match meta["workspace_default_members"].as_array() {
        Some(members) => members.iter().map(|m| m.as_str().unwrap()).collect(),
        None => meta["workspace_members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect(),
    };
    let bins: Vec<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| defaults.contains(p["id"].as_str().unwrap()))
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        bins,
        ["vsigner"],
        "`cargo run` from the repository root must have exactly one binary to run"
    );
}

#[test]
fn the_demo_arguments_of_the_quick_start_parse() {
    let text = readme();
    let line = code_lines(section(&text, "Quick start"))
        .into_iter()
        .map(without_comment)
        .find(|l| l.starts_with("cargo run"))
        .expect("a cargo run line");
    let args: Vec<&str> = line.split(" -- ").nth(1).unwrap().split_whitespace().collect();
    let mut with_help = args.clone();
    with_help.push("--help");
    let out = vsigner(&with_help);
    assert!(
        out.status.success(),
        "`vsigner {}` does not parse: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The top-level subcommands, from `vsigner --help`.
fn subcommands() -> BTreeSet<String> {
    let help = help_of(&[]);
    help.split("Commands:")
        .nth(1)
        .unwrap()
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Checks one command as the README writes it (`vault sign ID --digest HEX|--text TEXT`):
/// its subcommand path exists and every `--flag` is in that subcommand's help.
fn check_command(written: &str, top: &BTreeSet<String>) {
    let words: Vec<&str> = written
        .split_whitespace()
        .skip_while(|w| *w == "vsigner")
        .collect();
    let Some(first) = words.first() else { return };
    if !top.contains(*first) {
        return;
    }
    // The subcommand path: leading lower-case words (placeholders are upper case).
    let mut path: Vec<&str> = Vec::new();
    for w in &words {
        let plain = w
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !plain || w.starts_with('-') {
            break;
        }
        // A lower-case value (`--curve secp256k1`) never follows the first flag: we stop
        // at the first flag. Positional words that are not subcommands end the path.
        let mut candidate = path.clone();
        candidate.push(w);
        let mut args = candidate.clone();
        args.push("--help");
        if !vsigner(&args).status.success() {
            break;
        }
        path = candidate;
    }
    assert!(!path.is_empty(), "README command `{written}`");
    let help = help_of(&path);
    for token in written.split(|c: char| c.is_whitespace() || "[]()|\\,`".contains(c)) {
        let flag = token.trim_end_matches(['.', '…', ':']);
        if flag.starts_with("--") && flag.len() > 2 {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.contains(flag),
                "the README shows `{flag}` for `vsigner {}`, which has no such option",
                path.join(" ")
            );
        }
    }
}

#[test]
fn every_command_the_readme_shows_exists_with_its_options() {
    let text = readme();
    let top = subcommands();
    let mut checked = 0;
    // The commands table: every backticked command in the first column.
    for row in section(&text, "Commands")
        .lines()
        .filter(|l| l.starts_with("| `"))
    {
        let first_cell = row.trim_start_matches('|').split(" | ").next().unwrap();
        for span in first_cell.split('`').skip(1).step_by(2) {
            check_command(span, &top);
            checked += 1;
        }
    }
    // Every `vsigner …` line of every code block (the walkthrough, the quick start).
    for line in code_lines(&text) {
        let line = without_comment(line).trim_end_matches('&').trim();
        if let Some(rest) = line.strip_prefix("vsigner ") {
            check_command(rest, &top);
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} commands found: did the README change shape?"
    );
}

#[test]
fn every_configuration_key_the_readme_names_is_accepted() {
    let text = readme();
    let known: BTreeSet<&str> = vsigner_signer::config::keys::ALL.iter().copied().collect();
    let table = section(&text, "Configuration");
    let mut named = 0;
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.trim_start_matches('|').split(" | ").next().unwrap();
        for key in first_cell.split('`').skip(1).step_by(2) {
            assert!(
                known.contains(key),
                "the README names configuration key `{key}`, which `vsigner run` does not accept"
            );
            named += 1;
        }
    }
    assert!(
        named > 15,
        "only {named} keys found: did the README change shape?"
    );
}
