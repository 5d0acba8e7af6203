//! `pgmirror offsite push`, and the off-site part of `backup` and `verify`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use pgmirror::config::BackupConfig;

use super::print_stdout;

/// Off-site copies of the backup set (the config file's [[offsite]] targets).
#[derive(Debug, Args)]
pub struct OffsiteArgs {
    #[command(subcommand)]
    command: OffsiteCommand,
}

#[derive(Debug, Subcommand)]
enum OffsiteCommand {
    /// Copy every backup a target lacks (after an outage), each object checked against
    /// the manifest, the manifest last.
    Push(super::backupset::SetArgs),
}

pub fn run(args: OffsiteArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        OffsiteCommand::Push(set) => {
            let (dir, config) = set.resolve()?;
            if config.offsite.is_empty() {
                anyhow::bail!("the config file has no [[offsite]] targets");
            }
            Ok(push(&dir, &config, false))
        }
    }
}

/// Pushes to every target, printing what happened; exit 1 when a target failed.
pub fn push(dir: &Path, config: &BackupConfig, quiet: bool) -> ExitCode {
    match pgmirror::offsite::push(dir, &config.offsite) {
        Ok(reports) => {
            let mut failed = false;
            for report in &reports {
                match &report.error {
                    None if !quiet => {
                        let _ = print_stdout(&format!(
                            "offsite {}: {} copied, {} already there",
                            report.target,
                            report.copied.len(),
                            report.already_there
                        ));
                    }
                    None => {}
                    Some(error) => {
                        failed = true;
                        eprintln!(
                            "warning: offsite {}: copy failed ({} copied before): {error}; `pgmirror offsite push` completes it",
                            report.target,
                            report.copied.len()
                        );
                    }
                }
            }
            if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("warning: off-site copies not made: {error}");
            ExitCode::from(1)
        }
    }
}

/// `verify --offsite NAME`: every remote object against its manifest.
pub fn verify(dir: &Path, config: &BackupConfig, name: &str) -> anyhow::Result<(Vec<String>, usize)> {
    let target = config
        .offsite
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| anyhow::anyhow!("no [[offsite]] target named {name:?} in the config file"))?;
    let problems = pgmirror::offsite::verify(dir, target)?;
    Ok((problems, pgmirror::backupset::list(dir)?.len()))
}
