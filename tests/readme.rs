//! The READMEs' example output is the golden files, verbatim.
//! `UPDATE_GOLDEN=1` rewrites the README blocks from the golden files.

use std::path::Path;

#[test]
fn readme_examples_are_the_golden_files() {
    assert!(golden_blocks("README.md") >= 2);
    assert!(golden_blocks("plugins/telegraf/README.md") >= 1);
    assert!(golden_blocks("plugins/prometheus/README.md") >= 1);
}

/// Checks (or rewrites) every golden block of the README at `rel`;
/// returns how many there are.
fn golden_blocks(rel: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join(rel)).expect(rel);
    let mut checked = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("<!-- golden:") {
        let after = &rest[start + "<!-- golden:".len()..];
        let name_end = after.find(" -->").expect("marker end");
        let name = &after[..name_end];
        let body_start = after.find("```text\n").expect("code block") + "```text\n".len();
        let body_end = after.find("```\n<!-- /golden -->").expect("block end");
        let shown = &after[body_start..body_end];
        let golden = std::fs::read_to_string(root.join("tests/golden").join(name))
            .unwrap_or_else(|e| panic!("golden {name}: {e}"));
        if shown != golden && std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            let offset = readme.len() - after.len();
            let updated = format!(
                "{}{}{}",
                &readme[..offset + body_start],
                golden,
                &readme[offset + body_end..]
            );
            std::fs::write(root.join(rel), updated).expect(rel);
            return golden_blocks(rel);
        }
        assert_eq!(
            shown, golden,
            "{rel}: block {name} differs from tests/golden/{name} (UPDATE_GOLDEN=1 rewrites it)"
        );
        checked += 1;
        rest = &after[body_end..];
    }
    checked
}

/// The default of `--long` of `vmnetprobe nagios`, as clap has it.
fn nagios_default(long: &str) -> String {
    use clap::CommandFactory;
    let command = vmnetprobe::cli::Args::command();
    let nagios = command
        .get_subcommands()
        .find(|c| c.get_name() == "nagios")
        .expect("nagios subcommand");
    let arg = nagios
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .unwrap_or_else(|| panic!("no --{long}"));
    arg.get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(",")
}

/// What plugins/nagios/README.md says about defaults is what the binary does.
#[test]
fn nagios_readme_states_the_real_defaults() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("plugins/nagios/README.md")).expect("README");
    // Markdown wraps lines: compare with single spaces.
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let claims = [
        format!(
            "`--external ADDR` (the address every VM must reach, default {}",
            vmnetprobe::config::DEFAULT_EXTERNAL
        ),
        format!("(overall deadline, default {})", nagios_default("timeout")),
        format!(
            "(state for VMs without a working agent, default {})",
            nagios_default("agent-down-state")
        ),
        format!(
            "`--max-output BYTES` (default {}",
            nagios_default("max-output")
        ),
        format!(
            "vmnetprobe stops by itself at `-t` (default {})",
            nagios_default("timeout")
        ),
    ];
    for claim in &claims {
        assert!(
            flat.contains(claim.as_str()),
            "README no longer says: {claim}"
        );
    }
    assert_eq!(
        nagios_default("max-output"),
        vmnetprobe::output::DEFAULT_MAX_OUTPUT.to_string()
    );
    assert!(!flat.contains("only gateways are checked"));
}

/// `arguments` keys and their `$vmnetprobe_*$` variables in the shipped
/// CheckCommand: `"--external" = { value = "$vmnetprobe_external$" ...`.
fn check_command_arguments(conf: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = conf.lines().map(str::trim).peekable();
    while let Some(line) = lines.next() {
        let Some(key) = line
            .strip_prefix('"')
            .and_then(|l| l.strip_suffix("\" = {"))
            .filter(|k| k.starts_with('-'))
        else {
            continue;
        };
        let body = lines.next().unwrap_or_default();
        let var = body
            .split('$')
            .nth(1)
            .unwrap_or_else(|| panic!("{key}: no $variable$ in {body:?}"));
        out.push((key.to_string(), var.to_string()));
    }
    out
}

/// Every option of `vmnetprobe nagios` can be set from Icinga 2 through a
/// `vmnetprobe_<long name>` variable, and the CheckCommand passes nothing
/// the CLI does not know.
#[test]
fn icinga_check_command_covers_every_cli_option() {
    use clap::CommandFactory;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let conf = std::fs::read_to_string(root.join("plugins/icinga2/vmnetprobe-command.conf"))
        .expect("CheckCommand");
    let args = check_command_arguments(&conf);
    assert!(args.len() >= 20, "{args:?}");
    let command = vmnetprobe::cli::Args::command();
    let nagios = command
        .get_subcommands()
        .find(|c| c.get_name() == "nagios")
        .expect("nagios subcommand");
    let mut options = Vec::new();
    for arg in nagios.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let forms: Vec<String> = std::iter::once(format!("--{long}"))
            .chain(arg.get_short().map(|s| format!("-{s}")))
            .collect();
        let Some((key, var)) = args.iter().find(|(key, _)| forms.contains(key)) else {
            panic!("the CheckCommand has no argument for --{long}");
        };
        assert_eq!(
            var,
            &format!("vmnetprobe_{}", long.replace('-', "_")),
            "variable of {key}"
        );
        options.extend(forms);
    }
    for (key, _) in &args {
        assert!(
            options.contains(key),
            "{key} is not an option of vmnetprobe nagios"
        );
    }
}

/// Every option of every subcommand has a row in README's option table.
#[test]
fn readme_option_table_lists_every_option() {
    use clap::CommandFactory;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `-")).collect();
    let command = vmnetprobe::cli::Args::command();
    for sub in command.get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if ["help", "version"].contains(&long) {
                continue;
            }
            let cell = format!("`--{long}");
            let short = arg.get_short().map(|c| format!("`-{c}, --{long}"));
            assert!(
                rows.iter().any(|row| {
                    let first = row.split(" | ").next().unwrap_or_default();
                    first.contains(&cell)
                        || short.as_ref().is_some_and(|s| first.contains(s.as_str()))
                }),
                "README's option table lacks --{long} ({})",
                sub.get_name()
            );
        }
    }
}
