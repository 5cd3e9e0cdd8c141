//! Command-line entry point: wires the subcommands to the library.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Stores vault-provider credentials (1Password, Doppler, Infisical) from Kubernetes Secrets in
/// AWS SSM Parameter Store, driven by `VaultConnection` resources.
#[derive(Parser)]
#[command(name = "vault-connection-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run(Box<vault_connection_operator::config::RunArgs>),
    /// Print the VaultConnection CustomResourceDefinition as YAML.
    Crd,
    /// Check VaultConnection manifests (and their Secrets) offline, for CI and GitOps pipelines.
    ///
    /// Prints one line per problem as `file:document-index: field: message` (document index
    /// counts from 0) and never a value. Exit status: 0 clean, 1 problems found, 2 input that
    /// cannot be read or parsed.
    Validate {
        /// Files or directories (searched for *.yaml, *.yml, *.json), or `-` for stdin.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
        /// Also read the subdirectories of directories.
        #[arg(short = 'R', long)]
        recursive: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", vault_connection_operator::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Validate { files, recursive } => validate(&files, recursive),
        Command::Run(args) => run(*args),
    }
}

fn run(args: vault_connection_operator::config::RunArgs) -> ExitCode {
    use vault_connection_operator::run;
    if let Err(e) = args
        .check()
        .and_then(|()| run::init_logging(args.log_format, &args.log_level))
    {
        eprintln!("vault-connection-operator run: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vault-connection-operator run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator failed");
            ExitCode::FAILURE
        }
    }
}

fn validate(files: &[std::path::PathBuf], recursive: bool) -> ExitCode {
    let report = vault_connection_operator::manifests::validate_paths(files, recursive);
    for e in &report.input_errors {
        eprintln!("{e}");
    }
    for p in &report.problems {
        println!("{p}");
    }
    eprintln!(
        "checked {} VaultConnection(s): {} problem(s), {} input error(s)",
        report.checked,
        report.problems.len(),
        report.input_errors.len()
    );
    ExitCode::from(report.exit_code())
}
