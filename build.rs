//! Generates the man pages (gzipped, as Debian policy wants them) and the
//! bash/zsh/fish completions from the clap definitions in src/cli.rs, so
//! they can never disagree with `--help`.
//! They are written to OUT_DIR and copied to `<target>/<profile>/assets/`,
//! the stable path Cargo.toml's `[package.metadata.deb]` packages them from
//! (cargo-deb has no way to name OUT_DIR, whose name carries a hash).

use clap::CommandFactory;
use clap_complete::Shell;
use flate2::{Compression, GzBuilder};
use std::io::Write;
use std::path::{Path, PathBuf};

#[path = "src/cli.rs"]
#[allow(dead_code)]
mod cli;

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=src/cli.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or(std::io::ErrorKind::NotFound)?)
        .join("assets");
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let libvirt = std::env::var_os("CARGO_FEATURE_LIBVIRT").is_some();
    let mut command = cli::Args::command().version(cli::version_text(libvirt));
    let roff = out.join("roff");
    std::fs::create_dir_all(&roff)?;
    clap_mangen::generate_to(command.clone(), &roff)?;
    // vmnetprobe(1) again, with the operator sections as real man page
    // sections (clap_mangen would put --help's text under one "EXTRA").
    let mut top = command.clone().disable_help_subcommand(true);
    top.build();
    write_top_page(&clap_mangen::Man::new(top), &roff.join("vmnetprobe.1"))?;
    for page in std::fs::read_dir(&roff)? {
        let page = page?.path();
        if let Some(name) = page.file_name().and_then(|n| n.to_str()) {
            write_gzipped(&man.join(format!("{name}.gz")), &std::fs::read(&page)?)?;
        }
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, "vmnetprobe", &completions)?;
    }
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile_dir = out.ancestors().nth(4).filter(|dir| {
        out.ancestors().nth(3).and_then(Path::file_name) == Some("build".as_ref()) && dir.is_dir()
    });
    match profile_dir {
        Some(dir) => {
            copy_dir(&man, &dir.join("assets/man"))?;
            copy_dir(&completions, &dir.join("assets/completions"))?;
        }
        None => println!(
            "cargo:warning=unexpected OUT_DIR layout {}: man pages and completions stay there",
            out.display()
        ),
    }
    Ok(())
}

fn write_top_page(man: &clap_mangen::Man, path: &Path) -> std::io::Result<()> {
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    for (title, paragraphs) in cli::MANUAL_SECTIONS {
        writeln!(page, ".SH \"{title}\"")?;
        for paragraph in *paragraphs {
            match paragraph.strip_prefix("$ ") {
                Some(command) => writeln!(page, ".RS 4\n.nf\n{}\n.fi\n.RE", roff_text(command))?,
                None => writeln!(page, ".PP\n{}", roff_text(paragraph))?,
            }
        }
    }
    man.render_version_section(&mut page)?;
    std::fs::write(path, page)
}

/// Plain text as one roff text line: backslashes, minus signs and
/// apostrophes escaped as clap_mangen does, never read as a request.
fn roff_text(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq");
    if escaped.starts_with('.') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// Like `gzip -9n`: no file name and no time stamp in the header, so the
/// output only changes when the page does.
fn write_gzipped(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(std::fs::File::create(path)?, Compression::best());
    gz.write_all(data)?;
    gz.finish()?.sync_all()
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
