//! The vmnetprobe binary: silence libvirt's stderr printer, parse, run,
//! print, exit. Everything else lives in the library.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use vmnetprobe::app;
use vmnetprobe::cli::{self, Args, Command};
use vmnetprobe::config::{Config, ConfigError};

fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (monitoring system gave up) is not worth a panic.
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    // libvirt prints every error to stderr by default; monitoring systems
    // would read that as output. Errors are handled as values instead.
    #[cfg(feature = "libvirt")]
    virt::error::clear_error_callback();

    let argv = cli::effective_args(std::env::args_os());
    let args = match Args::try_parse_from(&argv) {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print(&e.to_string());
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                print(&e.to_string());
                return ExitCode::from(app::USAGE_EXIT);
            }
            return fail(app::usage_failure(&argv, &e));
        }
    };
    let config = match Config::from_args(&app::target_args(&args.command)) {
        Ok(c) => c,
        Err(e) => return config_failure(&args.command, &e),
    };
    let textfile = match app::textfile(&args.command) {
        Ok(t) => t,
        Err(e) => return config_failure(&args.command, &e),
    };
    if let Command::Serve { listen, .. } = &args.command {
        return ExitCode::from(vmnetprobe::serve::serve(listen, config));
    }
    if let Command::Telegraf { execd: true, .. } = args.command {
        let input = Box::new(std::io::BufReader::new(std::io::stdin()));
        let mut stdout = std::io::stdout().lock();
        return match app::run_execd(&args.command, &config, input, &mut stdout) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        };
    }
    let report = app::collect(&config);
    let rendered = app::render(&args.command, &report);
    if let Some(path) = textfile {
        if let Err(e) = app::write_textfile(path, &rendered.text) {
            eprintln!("vmnetprobe: {e}");
            return ExitCode::from(app::USAGE_EXIT);
        }
        return ExitCode::from(rendered.exit_code);
    }
    print(&rendered.text);
    ExitCode::from(rendered.exit_code)
}

fn config_failure(command: &Command, error: &ConfigError) -> ExitCode {
    fail(app::config_failure(Some(command), error))
}

fn fail(failure: app::Failure) -> ExitCode {
    if let Some(text) = &failure.stdout {
        print(text);
    }
    if let Some(text) = &failure.stderr {
        eprint!("{text}");
    }
    ExitCode::from(failure.exit_code)
}
